/**
 * Preloaded (`node -r`) into a service process the bench starts, when BENCH_CPU_PROFILE names a file:
 * starts V8's sampling profiler at load, and on the IPC message { bench: 'dump' } from the bench stops
 * it and writes the .cpuprofile there (to a temporary name first, then renamed, so the bench can wait
 * for the file). With BENCH_CPU_PROFILE_RESETS=1, { bench: 'reset' } (the timing hook's message) also
 * throws away what was sampled so far and starts again, so the profile covers one measurement as the
 * timing hook's counts do (off by default: bench:query's profile covers all its runs). With
 * BENCH_CPU_PROFILE_AT_EXIT=1 the profile is also written when the process exits (a command that ends
 * by itself, such as `ops replay`). A message, not a signal: Nest's enableShutdownHooks() stops the app
 * on SIGUSR2. The app's code is not touched.
 */
import { Session } from 'node:inspector';
import { renameSync, writeFileSync } from 'node:fs';

const out = process.env.BENCH_CPU_PROFILE;
if (out) {
  const session = new Session();
  session.connect();
  const interval = Number(process.env.BENCH_CPU_PROFILE_INTERVAL_US ?? 1000);
  let written = false;
  const write = (profile: object) => {
    writeFileSync(`${out}.tmp`, JSON.stringify(profile));
    renameSync(`${out}.tmp`, out);
  };
  session.post('Profiler.enable', () =>
    session.post('Profiler.setSamplingInterval', { interval }, () => session.post('Profiler.start')),
  );
  process.on('message', (m: { bench?: string } | null) => {
    if (m?.bench === 'reset' && process.env.BENCH_CPU_PROFILE_RESETS === '1') {
      session.post('Profiler.stop', () => session.post('Profiler.start'));
      return;
    }
    if (m?.bench !== 'dump') return;
    session.post('Profiler.stop', (error, result) => {
      if (error) {
        process.stderr.write(`cpu-profile-hook: ${error.message}\n`);
        return;
      }
      written = true;
      write(result.profile);
    });
  });
  if (process.env.BENCH_CPU_PROFILE_AT_EXIT === '1')
    // A session on the process's own thread answers synchronously, so this works in an exit handler.
    process.on('exit', () => {
      if (written) return;
      session.post('Profiler.stop', (error, result) => {
        if (!error) write(result.profile);
      });
    });
  process.channel?.unref();
}
