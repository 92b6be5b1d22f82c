import { ChildProcess, execFile, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const ROOT = join(__dirname, '..', '..');
const SOURCE_ENTRY = ['-r', 'ts-node/register/transpile-only', '-r', 'tsconfig-paths/register'];

/** Starts one of the service's processes (apps/<name>/src/main.ts) from source, as a real child process. */
export function startProcess(
  name: 'writer' | 'projector' | 'api',
  env: Record<string, string>,
): ChildProcess & { output: string[] } {
  const child = spawn(process.execPath, [...SOURCE_ENTRY, join(ROOT, 'apps', name, 'src', 'main.ts')], {
    cwd: ROOT,
    env: { ...process.env, ...env, TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'), TS_NODE_TRANSPILE_ONLY: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildProcess & { output: string[] };
  child.output = [];
  child.stdout?.on('data', (d: Buffer) => child.output.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => child.output.push(d.toString()));
  return child;
}

export function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/** `npm run ops -- <args>` as an operator runs it: a real process, from source, with the run's environment. */
export function runOps(env: Record<string, string>, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [...SOURCE_ENTRY, join(ROOT, 'apps/ops/src/main.ts'), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env, TS_NODE_PROJECT: join(ROOT, 'tsconfig.json') },
  });
}

/** A TCP port free on 127.0.0.1 right now, to give a started API process (HTTP_PORT) its own. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** Waits until `url` answers 200 (an API process is up), or fails with the process's last output. */
export async function waitForHttp(url: string, child?: { output: string[] }, timeoutMs = 60000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms: ${child?.output.slice(-5).join('') ?? ''}`);
}

/** `npm run ops -- <args>` left running (for --follow), its output collected; stop it with stopProcess. */
export function spawnOps(env: Record<string, string>, ...args: string[]): ChildProcess & { output: string[] } {
  const child = spawn(process.execPath, [...SOURCE_ENTRY, join(ROOT, 'apps/ops/src/main.ts'), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env, TS_NODE_PROJECT: join(ROOT, 'tsconfig.json') },
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildProcess & { output: string[] };
  child.output = [];
  child.stdout?.on('data', (d: Buffer) => child.output.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => child.output.push(d.toString()));
  return child;
}
