/** Takes and summarises V8 CPU profiles (.cpuprofile): self time by function and by package, inclusive time by package and app function. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { BenchChild, fmt, say, sleep, table } from './harness';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Profiles this process until the returned function is called; it writes the profile to `file`. */
export async function profileSelf(file: string, intervalUs = 1000): Promise<() => Promise<CpuProfile>> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) =>
      session.post(method, params ?? {}, (e, r) => (e ? reject(e) : resolve(r))),
    );
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: intervalUs });
  await post('Profiler.start');
  return async () => {
    const { profile } = (await post('Profiler.stop')) as { profile: CpuProfile };
    session.disconnect();
    writeFileSync(file, JSON.stringify(profile));
    return profile;
  };
}

/** Asks a child started with the cpu-profile hook for its profile (IPC message) and waits for the file. */
export async function collectChildProfile(child: BenchChild, file: string, timeoutMs = 60000): Promise<CpuProfile> {
  child.send({ bench: 'dump' });
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`no CPU profile at ${file} after ${timeoutMs} ms`);
    await sleep(100);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** Where a frame's code lives: an npm package, an app/lib file, node core, V8 natives, or a V8 pseudo-frame. */
function packageOf(frame: ProfileNode['callFrame']): string {
  if (SPECIAL.has(frame.functionName) && frame.url === '') return frame.functionName;
  const url = frame.url;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const app =
    /\/dist\/((?:apps|libs|bench|test)\/[^/]+)\//.exec(url) ?? /\/((?:apps|libs|bench|test)\/[^/]+)\//.exec(url);
  if (app) return app[1];
  if (url.startsWith('node:')) return 'node core';
  if (url === '') return 'V8 builtins / native (JSON, RegExp, Buffer, ...)';
  return url;
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const d = url.indexOf('/dist/');
  if (d >= 0) return url.slice(d + '/dist/'.length);
  return url.replace(/^file:\/\//, '');
}

function functionKey(frame: ProfileNode['callFrame']): string {
  const name = frame.functionName || '(anonymous)';
  return frame.url ? `${name}  ${shortUrl(frame.url)}:${frame.lineNumber + 1}` : name;
}

/** Prints a profile's breakdown. `appFilter` picks the functions whose inclusive time is listed (app code by default). */
export function summariseProfile(profile: CpuProfile, options: { top?: number; title?: string } = {}): void {
  const top = options.top ?? 15;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfByFn = new Map<string, number>();
  const selfByPkg = new Map<string, number>();
  const inclByPkg = new Map<string, number>();
  const inclByAppFn = new Map<string, number>();
  let total = 0;
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    if (dt <= 0) continue;
    total += dt;
    const node = byId.get(profile.samples[i]);
    if (!node) continue;
    add(selfByFn, functionKey(node.callFrame), dt);
    add(selfByPkg, packageOf(node.callFrame), dt);
    const pkgs = new Set<string>();
    const fns = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      const pkg = packageOf(f);
      if (pkg === '(root)') continue;
      pkgs.add(pkg);
      if (/^(apps|libs)\//.test(pkg) && f.functionName) fns.add(functionKey(f));
    }
    pkgs.delete('bench/support'); // the bench's query wrapper frame sits on every pg stack; its self time is listed above
    for (const p of pkgs) add(inclByPkg, p, dt);
    for (const f of fns) add(inclByAppFn, f, dt);
  }
  const pct = (v: number) => `${fmt((100 * v) / Math.max(1, total), 1)}%`;
  const ms = (v: number) => fmt(v / 1000, 0);
  const sorted = (m: Map<string, number>, n: number) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n);
  say();
  say(
    `${options.title ?? 'CPU profile'}: ${fmt(total / 1e6, 1)} s sampled (idle = the thread waited on I/O: PostgreSQL, Kafka, Redis)`,
  );
  say();
  table([
    ['self time by package / area', 'ms', 'share'],
    ...sorted(selfByPkg, top).map(([k, v]) => [k, ms(v), pct(v)]),
  ]);
  say();
  table([
    ['inclusive time by package (stacks containing it)', 'ms', 'share'],
    ...sorted(inclByPkg, top)
      .filter(([k]) => !SPECIAL.has(k))
      .map(([k, v]) => [k, ms(v), pct(v)]),
  ]);
  say();
  table([
    ['inclusive time of app functions', 'ms', 'share'],
    ...sorted(inclByAppFn, top).map(([k, v]) => [k, ms(v), pct(v)]),
  ]);
  say();
  table([['top self-time functions', 'ms', 'share'], ...sorted(selfByFn, top).map(([k, v]) => [k, ms(v), pct(v)])]);
}
