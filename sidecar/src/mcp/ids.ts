import { monotonicFactory } from 'ulidx';

// ULIDs: 128-bit, lexicographically sortable by creation time, monotonic within one millisecond.
const nextUlid = monotonicFactory();

export function newMessageId(): string {
  return nextUlid();
}
