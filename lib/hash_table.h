/* Typed hash maps. PM_DEFINE_HASH_MAP(name, key_type, value_type, hash, eq)
 * defines `struct name` and inline functions on it: open addressing with
 * linear probing in a power-of-two table kept at most 3/4 full, one control
 * byte per slot (0 = empty, else 0x80 | the hash's top 7 bits, so a probe
 * compares keys only when those bits agree), deletion by backward shift (no
 * tombstones). hash(const key_type *) returns uint64_t; eq(const key_type *,
 * const key_type *) returns bool.
 *
 *	PM_DEFINE_HASH_MAP(addr_map, uint64_t, uint32_t, pm_hash_u64_key,
 *			   pm_u64_key_eq)
 *	struct addr_map m = PM_HASH_MAP_INIT;
 *	bool fresh;
 *	uint32_t *v = addr_map_insert(&m, &addr, &fresh);  // NULL: no memory
 *	uint32_t *found = addr_map_search(&m, &addr);      // NULL: absent
 *	for (size_t i = 0; i < m.capacity; i++)
 *		if (m.ctrl[i]) use(m.entries[i].key, m.entries[i].value);
 *	addr_map_deinit(&m);
 *
 * A new entry's value is zeroed. Pointers into the table stay valid until
 * the next insert or delete. */
#ifndef PM_HASH_TABLE_H
#define PM_HASH_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PM_HASH_MAP_INIT { NULL, NULL, 0, 0 }

/* A 64-bit mix (the MurmurHash3 finaliser): consecutive addresses spread. */
static inline uint64_t pm_hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return x;
}

/* FNV-1a of a NUL-terminated string, continuing from h (start with
 * PM_HASH_STRING_SEED), mixed at the end. */
#define PM_HASH_STRING_SEED UINT64_C(0xcbf29ce484222325)
static inline uint64_t pm_hash_string(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
	return pm_hash_u64(h);
}

static inline uint64_t pm_hash_u64_key(const uint64_t *key)
{
	return pm_hash_u64(*key);
}

static inline bool pm_u64_key_eq(const uint64_t *a, const uint64_t *b)
{
	return *a == *b;
}

static inline uint8_t pm_hash_ctrl(uint64_t hash)
{
	return (uint8_t)(0x80 | (hash >> 57));
}

#define PM_DEFINE_HASH_MAP(name, key_type, value_type, hash_fn, eq_fn)        \
struct name##_entry {                                                         \
	key_type key;                                                         \
	value_type value;                                                     \
};                                                                            \
                                                                              \
struct name {                                                                 \
	struct name##_entry *entries;                                         \
	uint8_t *ctrl;              /* 0: empty slot */                       \
	size_t capacity;            /* 0 or a power of two */                 \
	size_t size;                                                          \
};                                                                            \
                                                                              \
static inline __attribute__((unused)) void name##_init(struct name *m)        \
{                                                                             \
	m->entries = NULL;                                                    \
	m->ctrl = NULL;                                                       \
	m->capacity = m->size = 0;                                            \
}                                                                             \
                                                                              \
static inline __attribute__((unused)) void name##_deinit(struct name *m)      \
{                                                                             \
	free(m->entries);                                                     \
	free(m->ctrl);                                                        \
	name##_init(m);                                                       \
}                                                                             \
                                                                              \
/* The slot holding key, or the empty slot where it would go. */              \
static inline __attribute__((unused)) size_t name##_probe(                    \
	const struct name *m, const key_type *key, uint64_t hash)             \
{                                                                             \
	size_t mask = m->capacity - 1, i = (size_t)hash & mask;               \
	uint8_t tag = pm_hash_ctrl(hash);                                     \
	while (m->ctrl[i] &&                                                  \
	       !(m->ctrl[i] == tag && eq_fn(&m->entries[i].key, key)))        \
		i = (i + 1) & mask;                                           \
	return i;                                                             \
}                                                                             \
                                                                              \
static inline __attribute__((unused)) value_type *name##_search(              \
	const struct name *m, const key_type *key)                            \
{                                                                             \
	if (!m->size)                                                         \
		return NULL;                                                  \
	size_t i = name##_probe(m, key, hash_fn(key));                        \
	return m->ctrl[i] ? &m->entries[i].value : NULL;                      \
}                                                                             \
                                                                              \
/* Rehashes into a table of cap slots (a power of two). */                    \
static inline __attribute__((unused)) bool name##_rehash(struct name *m,      \
							 size_t cap)           \
{                                                                             \
	if (cap > SIZE_MAX / sizeof(struct name##_entry))                     \
		return false;                                                 \
	struct name grown = { malloc(cap * sizeof(struct name##_entry)),      \
			      calloc(cap, 1), cap, m->size };                 \
	if (!grown.entries || !grown.ctrl) {                                  \
		free(grown.entries);                                          \
		free(grown.ctrl);                                             \
		return false;                                                 \
	}                                                                     \
	for (size_t i = 0; i < m->capacity; i++) {                            \
		if (!m->ctrl[i])                                              \
			continue;                                             \
		uint64_t h = hash_fn(&m->entries[i].key);                     \
		size_t j = name##_probe(&grown, &m->entries[i].key, h);       \
		grown.ctrl[j] = pm_hash_ctrl(h);                              \
		grown.entries[j] = m->entries[i];                             \
	}                                                                     \
	free(m->entries);                                                     \
	free(m->ctrl);                                                        \
	*m = grown;                                                           \
	return true;                                                          \
}                                                                             \
                                                                              \
/* Room for n entries in all without growing again. */                        \
static inline __attribute__((unused)) bool name##_reserve(struct name *m,     \
							  size_t n)            \
{                                                                             \
	size_t cap = m->capacity ? m->capacity : 16;                          \
	while (cap / 4 * 3 < n) {                                             \
		if (cap > SIZE_MAX / 2)                                       \
			return false;                                         \
		cap *= 2;                                                     \
	}                                                                     \
	return cap == m->capacity || name##_rehash(m, cap);                   \
}                                                                             \
                                                                              \
/* The value of key, inserted (zeroed) when absent: *inserted says which.     \
 * NULL when memory ran out (the map is unchanged). */                        \
static inline __attribute__((unused)) value_type *name##_insert(              \
	struct name *m, const key_type *key, bool *inserted)                  \
{                                                                             \
	uint64_t hash = hash_fn(key);                                         \
	if (m->size) {                                                        \
		size_t i = name##_probe(m, key, hash);                        \
		if (m->ctrl[i]) {                                             \
			if (inserted)                                         \
				*inserted = false;                            \
			return &m->entries[i].value;                          \
		}                                                             \
	}                                                                     \
	if (!name##_reserve(m, m->size + 1))                                  \
		return NULL;                                                  \
	size_t i = name##_probe(m, key, hash);                                \
	m->ctrl[i] = pm_hash_ctrl(hash);                                      \
	m->entries[i].key = *key;                                             \
	memset(&m->entries[i].value, 0, sizeof(value_type));                  \
	m->size++;                                                            \
	if (inserted)                                                         \
		*inserted = true;                                             \
	return &m->entries[i].value;                                          \
}                                                                             \
                                                                              \
/* Removes key; false when it was absent. Later entries of the probe run      \
 * shift back into the hole, so searches never need tombstones. */            \
static inline __attribute__((unused)) bool name##_delete(struct name *m,      \
							 const key_type *key)  \
{                                                                             \
	if (!m->size)                                                         \
		return false;                                                 \
	size_t mask = m->capacity - 1, hole = name##_probe(m, key,            \
							   hash_fn(key));     \
	if (!m->ctrl[hole])                                                   \
		return false;                                                 \
	for (size_t j = (hole + 1) & mask; m->ctrl[j]; j = (j + 1) & mask) {  \
		size_t home = (size_t)hash_fn(&m->entries[j].key) & mask;     \
		/* j may move to the hole when its home is not in (hole, j]. */ \
		if (((j - home) & mask) >= ((j - hole) & mask)) {             \
			m->ctrl[hole] = m->ctrl[j];                           \
			m->entries[hole] = m->entries[j];                     \
			hole = j;                                             \
		}                                                             \
	}                                                                     \
	m->ctrl[hole] = 0;                                                    \
	m->size--;                                                            \
	return true;                                                          \
}

#endif
