/**
 * One request to an application's HTTP endpoint: the status and the time to the response headers,
 * bounded by the endpoint's timeout. Credentials in the URL are sent as basic authentication
 * (fetch refuses them in the URL) and never appear in the result.
 */
import type { HttpEndpointConfig } from '../config/health.js';
import { redact } from '../config/redact.js';
import { messageOf } from '../errors.js';
import type { EndpointResult } from '../probes/application.js';

/** The subset of fetch this module uses (tests may pass their own). */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface ProbeEndpointOptions {
  /** A monotonic clock in ms for the latency (default performance.now). */
  readonly now?: () => number;
  readonly fetch?: FetchLike;
}

/** The URL as it may be shown: the password of its user part, and a password= parameter, replaced by "***". */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return redact(parsed.toString());
  } catch {
    return redact(url);
  }
}

/** The URL without its user part, and the Authorization header that carries it instead. */
function withoutCredentials(url: string): { readonly url: string; readonly headers: Record<string, string>; readonly secrets: string[] } {
  const parsed = new URL(url);
  if (parsed.username === '' && parsed.password === '') return { url, headers: {}, secrets: [] };
  const user = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  parsed.username = '';
  parsed.password = '';
  const token = Buffer.from(`${user}:${password}`).toString('base64');
  return { url: parsed.toString(), headers: { authorization: `Basic ${token}` }, secrets: [password, token] };
}

const networkCauses: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused (is the service running and listening there?)',
  ECONNRESET: 'connection reset by the server',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed (DNS)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_SOCKET: 'the connection closed before an answer',
  UND_ERR_HEADERS_TIMEOUT: 'no response headers in time',
};

/** Why a request failed, in words: the timeout, the network cause, or the TLS problem. */
function failureOf(error: unknown, timeoutMs: number): string {
  if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError')) return `no answer within ${timeoutMs} ms (timeout_ms)`;
  const cause = (error as { cause?: unknown }).cause;
  const code = typeof cause === 'object' && cause !== null && typeof (cause as { code?: unknown }).code === 'string' ? (cause as { code: string }).code : undefined;
  if (code !== undefined) {
    const known = networkCauses[code];
    if (known !== undefined) return known;
    // Certificate problems: the code names it (CERT_HAS_EXPIRED, DEPTH_ZERO_SELF_SIGNED_CERT…).
    return `${messageOf(cause)} (${code})`;
  }
  return cause === undefined ? messageOf(error) : `${messageOf(error)}: ${messageOf(cause)}`;
}

function expected(statuses: readonly number[] | undefined): string {
  return statuses === undefined ? '2xx' : statuses.join(' or ');
}

/** Requests the endpoint once (GET) and reports the status and latency, or why it failed. */
export async function probeEndpoint(endpoint: HttpEndpointConfig, options: ProbeEndpointOptions = {}): Promise<EndpointResult> {
  const now = options.now ?? (() => performance.now());
  const doFetch: FetchLike = options.fetch ?? ((url, init) => fetch(url, init));
  const shownUrl = redactUrl(endpoint.url);
  const base = { name: endpoint.name, url: shownUrl };
  let target: ReturnType<typeof withoutCredentials>;
  try {
    target = withoutCredentials(endpoint.url);
  } catch (error) {
    return { ...base, ok: false, status: null, latencyMs: null, error: `not a valid URL: ${redact(messageOf(error))}` };
  }
  const started = now();
  try {
    const response = await doFetch(target.url, {
      method: 'GET',
      // A fresh connection each time: a pooled socket the service has since closed would fail
      // the check for nothing, and a health check should see what a new client sees.
      headers: { 'user-agent': 'pgwarden health check', connection: 'close', ...target.headers },
      signal: AbortSignal.timeout(endpoint.timeoutMs),
    });
    const latencyMs = now() - started;
    // The body is not needed: release the connection instead of downloading it.
    await response.body?.cancel().catch(() => undefined);
    const healthy = endpoint.expectStatus === undefined ? response.status >= 200 && response.status < 300 : endpoint.expectStatus.includes(response.status);
    return {
      ...base,
      ok: healthy,
      status: response.status,
      latencyMs,
      error: healthy ? null : `HTTP ${response.status}${response.statusText === '' ? '' : ` ${response.statusText}`} (expected ${expected(endpoint.expectStatus)})`,
    };
  } catch (error) {
    return { ...base, ok: false, status: null, latencyMs: null, error: redact(failureOf(error, endpoint.timeoutMs), target.secrets) };
  }
}
