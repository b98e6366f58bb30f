// What a process costs, read from Linux /proc: CPU time (utime + stime) and peak resident memory.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

let clockTicks: number | undefined;

/** Kernel clock ticks per second (USER_HZ), the unit of utime/stime in /proc/<pid>/stat. */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU seconds (user + system) in a /proc stat file: a process's, or one thread's (task/<tid>/stat). */
function statCpuSeconds(text: string): number {
  // The command name (field 2) is in parentheses and may contain spaces: split after its ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]); // field 14
  const stime = Number(fields[12]); // field 15
  return (utime + stime) / ticksPerSecond();
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  return statCpuSeconds(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/** CPU seconds a process's main thread (its event loop, for Node) has used so far. */
export function mainThreadCpuSeconds(pid: number): number {
  return statCpuSeconds(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8'));
}

/** CPU seconds per thread so far, keyed by "<thread name>\0<tid>" (`main` for the main thread). */
export function threadCpu(pid: number): Map<string, number> {
  const byTid = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      byTid.set(`${name}\u0000${tid}`, statCpuSeconds(stat));
    } catch { /* the thread ended */ }
  }
  return byTid;
}

/** CPU seconds the whole machine has spent busy (all CPUs, everything but idle and iowait) so far. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!; // "cpu  user nice system idle iowait irq softirq steal …"
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  return (total - ticks[3]! - ticks[4]!) / ticksPerSecond();
}

/** Memory figures from /proc/<pid>/status, in MiB: peak resident (VmHWM) and current (VmRSS). */
export function memoryMiB(pid: number): { peak: number; current: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { peak: kib('VmHWM') / 1024, current: kib('VmRSS') / 1024 };
}

export interface Machine {
  cpus: number;
  model: string;
  node: string;
  kernel: string;
  memoryGiB: number;
}

export function machine(): Machine {
  let model = os.cpus()[0]?.model ?? 'unknown';
  try {
    model = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? model;
  } catch { /* not Linux */ }
  return { cpus: os.availableParallelism(), model, node: process.version, kernel: `${os.type()} ${os.release()}`, memoryGiB: os.totalmem() / 2 ** 30 };
}
