/* Unit tests of lib/vector.h and lib/hash_table.h: the library's typed
 * growable array and hash map, checked against a plain reference (an array
 * indexed by key) through growth, deletion with wrap-around probe runs, and
 * string keys. */
#include "check.h"
#include "hash_table.h"
#include "vector.h"

#include <stdio.h>
#include <string.h>

PM_DEFINE_VECTOR(u64_vector, uint64_t)

/* Every key hashes to one of 4 homes, so probe runs are long and wrap. */
static uint64_t clustered_hash(const uint64_t *key)
{
	return (*key % 4) * UINT64_C(0x4000000000000001);
}
PM_DEFINE_HASH_MAP(clustered_map, uint64_t, uint32_t, clustered_hash,
		   pm_u64_key_eq)
PM_DEFINE_HASH_MAP(u64_map, uint64_t, uint64_t, pm_hash_u64_key, pm_u64_key_eq)

static uint64_t str_hash(const char *const *key)
{
	return pm_hash_string(PM_HASH_STRING_SEED, *key);
}
static bool str_eq(const char *const *a, const char *const *b)
{
	return !strcmp(*a, *b);
}
/* A typedef, so that the macro's `const K *` is a pointer to a const
 * pointer (spelt out, clang rejects the doubled const under -Werror). */
typedef const char *name_key;
PM_DEFINE_HASH_MAP(str_map, name_key, int, str_hash, str_eq)

static void test_vector(void)
{
	struct u64_vector v = PM_VECTOR_INIT;
	bool ok = true;
	for (uint64_t i = 0; i < 100000 && ok; i++)
		ok = u64_vector_append(&v, &i);
	CHECK(ok && v.size == 100000 && v.capacity >= v.size,
	      "100000 appends: size %zu capacity %zu", v.size, v.capacity);
	bool values = true;
	for (size_t i = 0; i < v.size; i++)
		values &= v.data[i] == i;
	CHECK(values, "every appended value in place");
	uint64_t *z = u64_vector_append_zeroed(&v, 3);
	CHECK(z && z[0] == 0 && z[2] == 0 && v.size == 100003,
	      "append_zeroed(3) gives zeroes at the end");
	u64_vector_shrink_to_fit(&v);
	CHECK(v.capacity == v.size, "shrink_to_fit: capacity %zu == size %zu",
	      v.capacity, v.size);
	CHECK(!u64_vector_reserve(&v, SIZE_MAX / 4) && v.size == 100003 &&
	      v.data[5] == 5, "an impossible reserve fails and keeps the contents");
	uint64_t *stolen = u64_vector_steal(&v);
	CHECK(stolen && stolen[99999] == 99999 && !v.data && !v.size,
	      "steal hands over the array and empties the vector");
	free(stolen);
	u64_vector_deinit(&v);
}

static void test_clustered_map(void)
{
	enum { N = 2000 };
	static uint32_t truth[N];
	static bool present[N];
	struct clustered_map m = PM_HASH_MAP_INIT;
	bool ok = true;
	for (uint64_t k = 0; k < N && ok; k++) {
		bool fresh;
		uint32_t *v = clustered_map_insert(&m, &k, &fresh);
		ok = v && fresh && *v == 0;
		if (ok)
			*v = truth[k] = (uint32_t)(k * 7 + 1);
		present[k] = true;
	}
	CHECK(ok && m.size == N, "%d inserts into long probe runs", N);
	/* Delete every third key, then every other, checking all after. */
	size_t left = N;
	for (uint64_t k = 0; k < N; k += 3) {
		ok &= clustered_map_delete(&m, &k);
		present[k] = false;
		left--;
	}
	for (uint64_t k = 1; k < N; k += 2)
		if (present[k]) {
			ok &= clustered_map_delete(&m, &k);
			present[k] = false;
			left--;
		}
	CHECK(ok && m.size == left, "deletions: %zu left (want %zu)", m.size, left);
	bool agree = true;
	for (uint64_t k = 0; k < N; k++) {
		uint32_t *v = clustered_map_search(&m, &k);
		agree &= present[k] ? v && *v == truth[k] : v == NULL;
	}
	CHECK(agree, "after backward-shift deletion every key is found or absent as it should be");
	uint64_t gone = 0;
	CHECK(!clustered_map_delete(&m, &gone), "deleting an absent key says so");
	bool fresh = true;
	uint64_t again = 2;
	uint32_t *v = clustered_map_insert(&m, &again, &fresh);
	CHECK(v && !fresh && *v == truth[2], "insert of a present key returns its value");
	clustered_map_deinit(&m);
}

static void test_u64_map(void)
{
	struct u64_map m = PM_HASH_MAP_INIT;
	bool ok = true;
	for (uint64_t k = 0; k < 300000 && ok; k++) {
		uint64_t key = UINT64_C(0x7f0000000000) + 16 * k;
		uint64_t *v = u64_map_insert(&m, &key, NULL);
		ok = v != NULL;
		if (ok)
			*v = k;
	}
	size_t seen = 0;
	uint64_t sum = 0;
	for (size_t i = 0; i < m.capacity; i++)
		if (m.ctrl[i]) {
			seen++;
			sum += m.entries[i].value;
		}
	CHECK(ok && seen == 300000 && sum == UINT64_C(300000) * 299999 / 2 &&
	      m.size * 4 <= m.capacity * 3,
	      "300000 addresses: iteration sees each once, load %zu/%zu",
	      m.size, m.capacity);
	u64_map_deinit(&m);
}

static void test_str_map(void)
{
	struct str_map m = PM_HASH_MAP_INIT;
	const char *names[] = { "dict keys", "list items", "str", "dict keys" };
	for (size_t i = 0; i < 4; i++) {
		int *v = str_map_insert(&m, &names[i], NULL);
		if (v)
			(*v)++;
	}
	char copy[16];
	strcpy(copy, "dict keys");
	const char *key = copy;
	int *v = str_map_search(&m, &key);
	CHECK(m.size == 3 && v && *v == 2,
	      "string keys compare by content: 3 keys, 'dict keys' counted twice");
	str_map_deinit(&m);
}

int main(void)
{
	test_vector();
	test_clustered_map();
	test_u64_map();
	test_str_map();
	return check_exit_status();
}
