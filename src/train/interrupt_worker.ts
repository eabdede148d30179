/**
 * Watches SIGINT off the main thread for {@link InterruptWatcher} (interrupt.ts). The main
 * thread can be held for a whole step inside `queue.submit` (software Vulkan runs the work
 * there), so a listener of its own would only run between steps and a second Ctrl-C could not
 * stop the process at once. Here: the first SIGINT prints the notice and sets the shared count
 * that the trainer reads between steps; the second prints its line and ends the process at
 * once, the way Ctrl-C does without a handler (status 130).
 *
 * Protocol: `{ count: SharedArrayBuffer(4), notice, second }` in; `"ready"` out once listening.
 */
/// <reference lib="deno.worker" />

let count: Int32Array | null = null;
let notice = "", second = "";
const enc = new TextEncoder();

function onSigint(): void {
  const n = Atomics.add(count!, 0, 1) + 1;
  Deno.stderr.writeSync(enc.encode(n === 1 ? notice : second));
  if (n === 1) return;
  // With no listener left, SIGINT gets its default action back: the process ends at once,
  // whatever the main thread is doing. Without permission to signal, the trainer sees the
  // count of 2 between steps and exits itself; if the signal is swallowed by a listener
  // elsewhere, SIGKILL after a moment.
  Deno.removeSignalListener("SIGINT", onSigint);
  try {
    Deno.kill(Deno.pid, "SIGINT");
    setTimeout(() => Deno.kill(Deno.pid, "SIGKILL"), 500);
  } catch {
    // no --allow-run: left to the main thread
  }
}

self.onmessage = (
  ev: MessageEvent<{ count: SharedArrayBuffer; notice: string; second: string }>,
) => {
  count = new Int32Array(ev.data.count);
  notice = ev.data.notice;
  second = ev.data.second;
  Deno.addSignalListener("SIGINT", onSigint);
  self.postMessage("ready");
};
