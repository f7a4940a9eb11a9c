// One in-process lock: every "read a Slot, then write it" sequence runs inside it, because Medplum's
// MemoryRepository has no transactions (withTransaction runs the callback without isolation or rollback).
export class Mutex {
  #tail = Promise.resolve();

  run(task) {
    const result = this.#tail.then(() => task());
    this.#tail = result.catch(() => {});
    return result;
  }
}
