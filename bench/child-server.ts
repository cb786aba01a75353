/**
 * Servers the HTTP benches start in processes of their own: `server(args)` spawns `node args…`
 * and resolves once the child prints a JSON line with its `url`; `stop(child)` sends SIGTERM and
 * waits for the exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export async function server(args: string[], env: Record<string, string> = {}): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    lines.on('line', (l) => {
      try {
        const u = (JSON.parse(l) as { url?: string }).url;
        if (typeof u === 'string') resolve(u);
      } catch {
        // not a JSON line
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening`)));
  });
  return { url, child };
}

export async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
