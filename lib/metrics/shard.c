/* shard.c: which shard a thread writes to.
 *
 * The first OM_SHARDS threads that update a counter or histogram each claim
 * an exclusive shard, for every metric of every registry at once. Being the
 * only writer of its slots, the owner updates them with a plain load and
 * store: no lock prefix, no cache line shared with another writer. Threads
 * beyond OM_SHARDS share shard 0 through atomic read-modify-writes.
 *
 * When an owner exits, a pthread key destructor hands the shard back. The
 * values it wrote stay in the slots (a scrape sums all shards), and the next
 * claimer carries on adding to them: the release store here and the acquire
 * compare-and-swap in om__shard_claim() order the old owner's last write
 * before the new owner's first.
 */
#include "internal.h"

#include <stdlib.h>

_Thread_local intptr_t om__tls_counter_off;
_Thread_local int om__tls_shard;

static _Atomic int shard_owned[OM_SHARDS + 1];
_Atomic int om__shard_hw;
static pthread_key_t shard_key;
static pthread_once_t shard_once = PTHREAD_ONCE_INIT;
static int shard_key_ok;

static void shard_release(void *arg) {
  int s = (int)(intptr_t)arg;
  /* From here on this thread (still running other destructors) writes
   * through the shared shard, never again through the one it gives back. */
  om__tls_shard = -1;
  om__tls_counter_off = -1;
  atomic_store_explicit(&shard_owned[s], 0, memory_order_release);
}

static void shard_init(void) {
  shard_key_ok = pthread_key_create(&shard_key, shard_release) == 0;
}

int om__shard_claim(void) {
  pthread_once(&shard_once, shard_init);
  /* Without a key we could not hand the shard back at thread exit, and a
   * new thread could end up sharing it with plain stores: share instead. */
  if (shard_key_ok) {
    for (int s = 1; s <= OM_SHARDS; s++) {
      int expected = 0;
      if (atomic_load_explicit(&shard_owned[s], memory_order_relaxed) == 0 &&
          atomic_compare_exchange_strong_explicit(&shard_owned[s], &expected, 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
        if (pthread_setspecific(shard_key, (void *)(intptr_t)s) != 0) {
          atomic_store_explicit(&shard_owned[s], 0, memory_order_release);
          break;
        }
        /* Raise the high-water mark before the first write to the shard:
         * a scrape that reads the mark (acquire) then sees the slots. */
        int hw = atomic_load_explicit(&om__shard_hw, memory_order_relaxed);
        while (hw < s && !atomic_compare_exchange_weak_explicit(
                             &om__shard_hw, &hw, s, memory_order_release,
                             memory_order_relaxed))
          ;
        om__tls_shard = s;
        om__tls_counter_off = s * OM_SHARD_STRIDE;
        return s;
      }
    }
  }
  om__tls_shard = -1;
  om__tls_counter_off = -1;
  return -1;
}
