export default async function globalTeardown(): Promise<void> {
  const containers = (globalThis as { __pspContainers?: { stop(): Promise<unknown> }[] }).__pspContainers ?? [];
  await Promise.all(containers.map((c) => c.stop()));
}
