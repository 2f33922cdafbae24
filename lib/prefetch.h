/* Asking the CPU for a cache line before it is needed. The passes over
 * the graph and the dominator tree go in order along one array and jump
 * about another by its values (a reference's target, a node's dominator):
 * on a big heap each jump is a cache miss. Asking for the line the loop
 * will want PM_AHEAD steps later lets those misses overlap instead of
 * queueing. A hint only: it reads nothing and changes no result, so an
 * address past the end of an array is harmless (the loops still stay in
 * bounds, to keep the sanitizers quiet). */
#ifndef PM_PREFETCH_H
#define PM_PREFETCH_H

#define PM_PREFETCH(p) __builtin_prefetch(p)
#define PM_PREFETCH_W(p) __builtin_prefetch((p), 1)

enum { PM_AHEAD = 16 };

#endif
