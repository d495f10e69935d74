import { readdirSync, readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { errorMessage } from './errors.js';

/**
 * Linux scheduling priority per thread. Nice values are per thread on Linux (setpriority with a
 * thread ID affects that thread only) and new threads inherit their creator's value. flowsentry
 * lowers the decoder thread and the storage process, and can raise the receive thread
 * (collector.receiveNice), so that under CPU contention the socket is read first and the rest catches up from the
 * queues (README, Architecture: the receive thread only receives). Lowering needs no privileges;
 * raising needs root, CAP_SYS_NICE or a matching RLIMIT_NICE.
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

/** A thread and the nice value it runs at now (null where it cannot be read: not Linux, thread gone). */
export interface ThreadNice {
  readonly tid: number | null;
  readonly nice: number | null;
}

/** Reads the nice value of a thread of this process (getpriority with a thread ID, Linux). */
export function threadNice(tid: number | null): ThreadNice {
  if (tid === null) return { tid, nice: null };
  try {
    return { tid, nice: getPriority(tid) };
  } catch {
    return { tid, nice: null };
  }
}

/** Lowers the calling thread's priority to `nice` (0 = leave it); true when applied. */
export function lowerThisThread(nice: number): boolean {
  if (nice <= 0) return false;
  return setThisThreadNice(nice).error === undefined;
}

export interface ThreadPriority {
  /** The thread's ID (null where threads have no ID of their own to set, i.e. not Linux). */
  readonly tid: number | null;
  readonly requestedNice: number;
  /** The nice value the thread runs at after the attempt. */
  readonly nice: number;
  /** Why the requested value could not be applied. */
  readonly error?: string;
}

/** Sets the calling thread's nice value; reports what it runs at and why not, when refused. */
export function setThisThreadNice(requestedNice: number): ThreadPriority {
  const tid = currentThreadId();
  if (tid === null) {
    return { tid, requestedNice, nice: 0, error: 'per-thread priorities need Linux (/proc/thread-self)' };
  }
  try {
    setPriority(tid, requestedNice);
    return { tid, requestedNice, nice: getPriority(tid) };
  } catch (error) {
    let nice = 0;
    try {
      nice = getPriority(tid);
    } catch {
      // The thread exists (it is this one); keep 0 if even reading fails.
    }
    return { tid, requestedNice, nice, error: errorMessage(error) };
  }
}

export interface ProcessNice {
  /** Threads of the process seen at the last pass. */
  threads: number;
  /** Threads lowered to the target so far (a thread is counted once per change). */
  lowered: number;
  /** The lowest nice value found among the threads at the last pass (after lowering). */
  minNice: number;
  error?: string;
}

/**
 * Lowers every thread of this process to at least `nice`, never raising one. setpriority() on the
 * process ID changes only its main thread: the libuv pool threads started before it keep their
 * value, and the embedded ClickHouse creates its pools from those threads (and gives some threads
 * its own values), so the store would otherwise run at the collector's priority. Called at start and
 * then periodically, for threads created since.
 */
export function lowerAllThreads(
  nice: number,
  state: ProcessNice = { threads: 0, lowered: 0, minNice: 0 },
): ProcessNice {
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch (error) {
    state.error = `per-thread priorities need Linux (/proc/self/task): ${errorMessage(error)}`;
    return state;
  }
  let min = 19;
  for (const name of tids) {
    const tid = Number(name);
    try {
      if (getPriority(tid) < nice) {
        setPriority(tid, nice);
        state.lowered++;
      }
      min = Math.min(min, getPriority(tid));
    } catch (error) {
      // The thread ended meanwhile, or lowering was refused (it never is for one's own threads).
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') state.error = errorMessage(error);
    }
  }
  state.threads = tids.length;
  state.minNice = min;
  return state;
}
