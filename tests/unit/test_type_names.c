/* Unit test of pm_type_name_printable (lib/cpython_types.c): a candidate
 * type object's tp_name must be UTF-8 text without control characters, as
 * CPython makes it; bytes that are not (a freed or overwritten type object
 * named "\xff\xff\xff\xff" reached a report once) make it no type. */
#include "check.h"
#include "cpython.h"

int main(void)
{
	static const char *const good[] = {
		"int", "collections.OrderedDict", "numpy.ndarray", "caf\xc3\xa9",
		"\xe2\x82\xac" "uro", "emoji\xf0\x9f\x98\x80", "with space",
	};
	static const char *const bad[] = {
		"", "\xff\xff\xff\xff", "tab\there", "del\x7f", "caf\xc3",      /* cut short */
		"\xc0\xaf", "\x80lead", "\xf5\x80\x80\x80", "e\xe2\x82", "\xc3(",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(pm_type_name_printable(good[i]), "type name %zu accepted", i);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!pm_type_name_printable(bad[i]), "type name %zu refused", i);
	return check_exit_status();
}
