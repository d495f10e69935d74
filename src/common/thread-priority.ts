import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * Linux scheduling priority per thread. Nice values are per thread on Linux (setpriority with a
 * thread ID affects that thread only) and new threads inherit their creator's value. flowsentry
 * keeps the receive thread at the default priority and lowers the decoder threads and the storage
 * process, so that under CPU contention the socket is read first and the rest catches up from the
 * queues (reference.md §2: keep the receive loop to receiving). Lowering needs no privileges.
 */

/** This thread's ID, or null where /proc/thread-self does not exist (not Linux). */
export function currentThreadId(): number | null {
  try {
    const id = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(id) ? id : null;
  } catch {
    return null;
  }
}

/** Lowers the calling thread's priority to `nice` (0 = leave it); true when applied. */
export function lowerThisThread(nice: number): boolean {
  if (nice <= 0) return false;
  const tid = currentThreadId();
  if (tid === null) return false;
  try {
    setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}
