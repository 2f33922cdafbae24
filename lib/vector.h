/* Typed growable arrays. PM_DEFINE_VECTOR(name, type) defines `struct name`
 * (data, size, capacity) and small inline functions on it, so every layer
 * grows its arrays the same way instead of writing its own realloc loop:
 *
 *	PM_DEFINE_VECTOR(u64_vector, uint64_t)
 *	struct u64_vector v = PM_VECTOR_INIT;
 *	if (!u64_vector_append(&v, &x)) return &pm_error_no_memory;
 *	... v.data[i] for i < v.size ...
 *	u64_vector_deinit(&v);
 *
 * Growth doubles (amortised O(1) appends); sizes are checked for overflow.
 * A failed allocation leaves the vector as it was and returns false/NULL. */
#ifndef PM_VECTOR_H
#define PM_VECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PM_VECTOR_INIT { NULL, 0, 0 }

/* The capacity to grow to so that `need` elements of `elem` bytes fit, or 0
 * when that many bytes cannot be addressed. */
static inline size_t pm_vector_grown_capacity(size_t capacity, size_t need,
					      size_t elem, size_t first)
{
	size_t cap = capacity ? capacity : first;
	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			return 0;
		cap *= 2;
	}
	return cap > SIZE_MAX / elem ? 0 : cap;
}

#define PM_DEFINE_VECTOR(name, type)                                          \
struct name {                                                                 \
	type *data;                                                           \
	size_t size, capacity;                                                \
};                                                                            \
                                                                              \
static inline __attribute__((unused)) void name##_init(struct name *v)        \
{                                                                             \
	v->data = NULL;                                                       \
	v->size = v->capacity = 0;                                            \
}                                                                             \
                                                                              \
static inline __attribute__((unused)) void name##_deinit(struct name *v)      \
{                                                                             \
	free(v->data);                                                        \
	name##_init(v);                                                       \
}                                                                             \
                                                                              \
/* Room for at least n elements in all. */                                    \
static inline __attribute__((unused)) bool name##_reserve(struct name *v,     \
							  size_t n)            \
{                                                                             \
	if (n <= v->capacity)                                                 \
		return true;                                                  \
	size_t cap = pm_vector_grown_capacity(v->capacity, n, sizeof(type),   \
					      16);                            \
	type *p = cap ? realloc(v->data, cap * sizeof(type)) : NULL;          \
	if (!p)                                                               \
		return false;                                                 \
	v->data = p;                                                          \
	v->capacity = cap;                                                    \
	return true;                                                          \
}                                                                             \
                                                                              \
/* A new, uninitialised last element, or NULL. */                             \
static inline __attribute__((unused)) type *name##_append_entry(              \
	struct name *v)                                                       \
{                                                                             \
	if (v->size == v->capacity &&                                         \
	    (v->size == SIZE_MAX || !name##_reserve(v, v->size + 1)))         \
		return NULL;                                                  \
	return &v->data[v->size++];                                           \
}                                                                             \
                                                                              \
static inline __attribute__((unused)) bool name##_append(struct name *v,      \
							 const type *x)        \
{                                                                             \
	type *slot = name##_append_entry(v);                                  \
	if (slot)                                                             \
		*slot = *x;                                                   \
	return slot != NULL;                                                  \
}                                                                             \
                                                                              \
/* n elements set to zero bytes at the end; the first of them, or NULL. */    \
static inline __attribute__((unused)) type *name##_append_zeroed(             \
	struct name *v, size_t n)                                             \
{                                                                             \
	if (n > SIZE_MAX - v->size || !name##_reserve(v, v->size + n))        \
		return NULL;                                                  \
	type *first = v->data + v->size;                                      \
	if (n)                                                                \
		memset(first, 0, n * sizeof(type));                           \
	v->size += n;                                                         \
	return first;                                                         \
}                                                                             \
                                                                              \
/* Gives the memory back down to size (best effort: keeps it on failure). */  \
static inline __attribute__((unused)) void name##_shrink_to_fit(              \
	struct name *v)                                                       \
{                                                                             \
	if (v->size == v->capacity)                                           \
		return;                                                       \
	if (!v->size) {                                                       \
		name##_deinit(v);                                             \
		return;                                                       \
	}                                                                     \
	type *p = realloc(v->data, v->size * sizeof(type));                   \
	if (p) {                                                              \
		v->data = p;                                                  \
		v->capacity = v->size;                                        \
	}                                                                     \
}                                                                             \
                                                                              \
/* Hands the array to the caller (who frees it); the vector is empty. */      \
static inline __attribute__((unused)) type *name##_steal(struct name *v)      \
{                                                                             \
	type *data = v->data;                                                 \
	name##_init(v);                                                       \
	return data;                                                          \
}

#endif
