/**
 * vitest globalSetup for the projects that run the real command line: compile src/ to dist/ once,
 * so `node bin/pgwarden.js` runs the code under test, not a stale build.
 */
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
