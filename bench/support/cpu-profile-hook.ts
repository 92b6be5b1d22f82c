/**
 * Preloaded (`node -r`) into a service process the bench starts, when BENCH_CPU_PROFILE names a file:
 * starts V8's sampling profiler at load, and on the IPC message { bench: 'dump' } from the bench stops
 * it and writes the .cpuprofile there (to a temporary name first, then renamed, so the bench can wait
 * for the file). A message, not a signal: Nest's enableShutdownHooks() stops the app on SIGUSR2. The
 * app's code is not touched.
 */
import { Session } from 'node:inspector';
import { renameSync, writeFileSync } from 'node:fs';

const out = process.env.BENCH_CPU_PROFILE;
if (out) {
  const session = new Session();
  session.connect();
  const interval = Number(process.env.BENCH_CPU_PROFILE_INTERVAL_US ?? 1000);
  session.post('Profiler.enable', () =>
    session.post('Profiler.setSamplingInterval', { interval }, () => session.post('Profiler.start')),
  );
  process.on('message', (m: { bench?: string } | null) => {
    if (m?.bench !== 'dump') return;
    session.post('Profiler.stop', (error, result) => {
      if (error) {
        process.stderr.write(`cpu-profile-hook: ${error.message}\n`);
        return;
      }
      writeFileSync(`${out}.tmp`, JSON.stringify(result.profile));
      renameSync(`${out}.tmp`, out);
    });
  });
  process.channel?.unref();
}
