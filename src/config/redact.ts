/** Keeping secrets off the screen, out of logs and out of mail. */

const passwordInUri = /(postgres(?:ql)?:\/\/[^:/@\s]*:)([^@\s]*)@/gi;
const passwordKeyValue = /((?:^|\s)password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi;
const passwordParam = /([?&]password=)([^&\s]*)/gi;

/** Replaces every password found in a DSN, conninfo string or message with "***". */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text
    .replace(passwordInUri, '$1***@')
    .replace(passwordKeyValue, '$1***')
    .replace(passwordParam, '$1***');
  for (const secret of secrets) {
    if (secret.length >= 3) out = out.split(secret).join('***');
  }
  return out;
}
