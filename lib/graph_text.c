/* The reference graph as a user reads it: an edge as the Python expression
 * that follows it (['key'], .attr, [3], .__dict__, local 'x'), a root by
 * what holds it (sys.modules, a thread's frame, a static type's field, a
 * module's data), an object by its value (a str, an int) or its type.
 * Names are read from the target when asked for: the graph keeps only
 * positions (entry indexes, offsets), never copies of keys. */
#include "graph_build.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bytes.h"

enum {
	TEXT_CHARS = 40,            /* characters of a str shown */
	STR_LENGTH = 16, STR_STATE = 32,
	NAME_LEN = 128,
	TP_NAME = 24, TP_BASE = 256,
	HT_CACHED_KEYS_FALLBACK = 880,
	MEMBERS_MAX = 4096,
};

static const char *const field_names[PM_FIELD_KINDS] = {
	[PM_FIELD_CLASS] = "__class__", [PM_FIELD_MRO] = "__mro__",
	[PM_FIELD_BASES] = "__bases__", [PM_FIELD_BASE] = "__base__",
	[PM_FIELD_CACHE] = "(type cache)", [PM_FIELD_SUBCLASSES] = "(subclasses)",
	[PM_FIELD_MODULE] = "__module__", [PM_FIELD_NAME] = "__name__",
	[PM_FIELD_QUALNAME] = "__qualname__", [PM_FIELD_SLOTS] = "__slots__",
	[PM_FIELD_CODE] = "__code__", [PM_FIELD_GLOBALS] = "__globals__",
	[PM_FIELD_BUILTINS] = "__builtins__", [PM_FIELD_DEFAULTS] = "__defaults__",
	[PM_FIELD_KWDEFAULTS] = "__kwdefaults__", [PM_FIELD_DOC] = "__doc__",
	[PM_FIELD_CLOSURE] = "__closure__", [PM_FIELD_ANNOTATIONS] = "__annotations__",
	[PM_FIELD_TYPE_PARAMS] = "__type_params__",
	[PM_FIELD_CELL_CONTENTS] = "cell_contents", [PM_FIELD_FUNC] = "__func__",
	[PM_FIELD_SELF] = "__self__", [PM_FIELD_START] = "start",
	[PM_FIELD_STOP] = "stop", [PM_FIELD_STEP] = "step",
	[PM_FIELD_FGET] = "fget", [PM_FIELD_FSET] = "fset", [PM_FIELD_FDEL] = "fdel",
	[PM_FIELD_PROP_NAME] = "(property name)", [PM_FIELD_WRAPPED] = "__wrapped__",
	[PM_FIELD_ARGS] = "args", [PM_FIELD_KEYWORDS] = "keywords",
	[PM_FIELD_TRACEBACK] = "__traceback__", [PM_FIELD_CONTEXT] = "__context__",
	[PM_FIELD_CAUSE] = "__cause__", [PM_FIELD_NOTES] = "__notes__",
	[PM_FIELD_TB_NEXT] = "tb_next", [PM_FIELD_TB_FRAME] = "tb_frame",
	[PM_FIELD_DEFAULT_FACTORY] = "default_factory",
	[PM_FIELD_ITERATED] = "(iterated)", [PM_FIELD_RESULT] = "(result cache)",
	[PM_FIELD_INDEX] = "(index)", [PM_FIELD_MAPPING] = "mapping",
	[PM_FIELD_OBJCLASS] = "__objclass__", [PM_FIELD_CALLBACK] = "__callback__",
	[PM_FIELD_THISCLASS] = "__thisclass__", [PM_FIELD_OBJ] = "__self__",
	[PM_FIELD_OBJTYPE] = "__self_class__", [PM_FIELD_BACK] = "f_back",
	[PM_FIELD_LOCALS] = "f_locals", [PM_FIELD_TRACE] = "f_trace",
	[PM_FIELD_FRAME] = "(frame)", [PM_FIELD_EXCEPTION] = "(exception)",
	[PM_FIELD_CONSTS] = "co_consts", [PM_FIELD_NAMES] = "co_names",
	[PM_FIELD_VARNAMES] = "co_varnames", [PM_FIELD_FREEVARS] = "co_freevars",
	[PM_FIELD_CELLVARS] = "co_cellvars", [PM_FIELD_FILENAME] = "co_filename",
	[PM_FIELD_LOCALSPLUSNAMES] = "co_localsplusnames",
	[PM_FIELD_BYTECODE] = "co_code", [PM_FIELD_LINETABLE] = "co_linetable",
	[PM_FIELD_EXCEPTIONTABLE] = "co_exceptiontable",
	[PM_FIELD_ORIGIN] = "(origin)", [PM_FIELD_DICT_KEYS_OWNER] = "(keys)",
	[PM_FIELD_INST_DICT] = "__dict__", [PM_FIELD_ODICT_KEY] = "(node key)",
	[PM_FIELD_MODULE_DICT] = "__dict__", [PM_FIELD_DICT] = "__dict__",
	[PM_FIELD_BYTES_OBJECT] = "(bytes object)",
	[PM_FIELD_LENGTH] = "(length)", [PM_FIELD_ANNOTATE] = "__annotate__",
};

const char *pm_field_name(enum pm_field field)
{
	return field < PM_FIELD_KINDS && field_names[field] ? field_names[field] : "?";
}

static bool word(const struct pm_graph *g, uint64_t addr, uint64_t *ret)
{
	struct pm_error *err = addr & 7 ? NULL : pm_target_read_u64(g->t, addr, ret);
	bool ok = !(addr & 7) && !err;
	pm_error_destroy(err);
	return ok;
}

static bool is_str_type(const struct pm_graph *g, uint64_t tp)
{
	if (tp == g->heap->kind_types[TK_STR])
		return true;
	const struct pm_cpython_type *t = pm_cpython_find_type(g->heap, tp);
	return t && (t->kind == TK_STR || t->kind == TK_STR_SUB);
}

/* The text of the str at addr, quoted; false when it is no str. */
static bool str_text(const struct pm_graph *g, uint64_t addr, struct pm_strbuf *out)
{
	uint8_t h[40];
	uint64_t tp;
	struct pm_error *err = pm_target_read(g->t, addr, h, sizeof(h));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	tp = pm_load_u64(h + 8);
	if (!is_str_type(g, tp))
		return false;
	int64_t length = (int64_t)pm_load_u64(h + STR_LENGTH);
	uint32_t state = pm_load_u32(h + STR_STATE);
	unsigned width = (state >> 2) & 7;
	bool compact = state & (1u << 5), ascii = state & (1u << 6);
	if (length < 0 || (width != 1 && width != 2 && width != 4))
		return false;
	uint64_t data = compact ? addr + (ascii ? g->l->str_ascii_size : g->l->str_data) : 0;
	if (!compact && !word(g, addr + g->l->str_data, &data))
		return false;
	uint64_t shown = (uint64_t)length < TEXT_CHARS ? (uint64_t)length : TEXT_CHARS;
	uint8_t buf[TEXT_CHARS * 4];
	if (shown) {
		err = pm_target_read(g->t, data, buf, (size_t)shown * width);
		if (err) {
			pm_error_destroy(err);
			return false;
		}
	}
	pm_strbuf_append(out, "'");
	pm_strbuf_python_chars(out, buf, (size_t)shown, width);
	pm_strbuf_append(out, (uint64_t)length > shown ? "'..." : "'");
	return true;
}

/* A small int's value; false when addr is no int or it is big. */
static bool int_text(const struct pm_graph *g, uint64_t addr, struct pm_strbuf *out)
{
	uint8_t h[32];
	struct pm_error *err = pm_target_read(g->t, addr, h, sizeof(h));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	const struct pm_cpython_type *t = pm_cpython_find_type(g->heap, pm_load_u64(h + 8));
	if (!t || strcmp(t->name, "int"))
		return false;
	uint64_t tag = pm_load_u64(h + 16), ndigits;
	bool negative;
	if (g->heap->py->minor >= 12) {
		ndigits = tag >> 3;
		negative = (tag & 3) == 2;
	} else {
		negative = (int64_t)tag < 0;
		ndigits = negative ? (uint64_t)0 - tag : tag;
	}
	if (ndigits > 2)
		return false;
	uint64_t v = 0;
	for (uint64_t i = ndigits; i-- > 0;)
		v = (v << 30) | (pm_load_u32(h + 24 + 4 * i) & 0x3fffffff);
	pm_strbuf_printf(out, "%s%" PRIu64, negative ? "-" : "", v);
	return true;
}

void pm_graph_object_text(const struct pm_graph *g, uint32_t node,
			  struct pm_strbuf *out)
{
	uint64_t addr = pm_graph_node_addr(g, node);
	if (str_text(g, addr, out) || int_text(g, addr, out))
		return;
	/* A class by its name: <class 'Customer' 0x...>. */
	const struct pm_cpython_type *tp = pm_cpython_find_type(g->heap, addr);
	if (tp && tp->name) {
		pm_strbuf_printf(out, "<class '%s' 0x%" PRIx64 ">", tp->name, addr);
		return;
	}
	pm_strbuf_printf(out, "<%s 0x%" PRIx64 ">", pm_graph_node_type(g, node), addr);
}

/* The key object of entry i of the keys table at keys. */
static bool keys_entry_key(const struct pm_graph *g, uint64_t keys, uint32_t i,
			   uint64_t *ret)
{
	uint8_t h[DICT_KEYS_HEAD];
	struct dict_keys k;
	struct pm_error *err = pm_target_read(g->t, keys, h, sizeof(h));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	return dict_keys_geometry(h, keys, g->heap->py->minor >= 11, &k) &&
	       i < k.nentries && word(g, k.entries + (uint64_t)i * k.entry_size + k.key_off, ret);
}

/* "['name']", "[42]", or "[<tuple 0x...>]" for a key object. */
static void key_text(const struct pm_graph *g, uint64_t key, struct pm_strbuf *out)
{
	pm_strbuf_append(out, "[");
	uint32_t node = pm_graph_node_at(g, key);
	if (node != PM_NODE_NONE)
		pm_graph_object_text(g, node, out);
	else if (!str_text(g, key, out) && !int_text(g, key, out))
		pm_strbuf_printf(out, "<key 0x%" PRIx64 ">", key);
	pm_strbuf_append(out, "]");
}

/* An attribute name: the str at addr without quotes. */
static void name_text(const struct pm_graph *g, uint64_t addr, struct pm_strbuf *out)
{
	struct pm_strbuf s;
	pm_strbuf_init(&s);
	if (str_text(g, addr, &s) && s.data && s.len >= 2) {
		pm_strbuf_appendn(out, s.data + 1, s.len - 2);
	} else {
		pm_strbuf_printf(out, "<name 0x%" PRIx64 ">", addr);
	}
	pm_strbuf_deinit(&s);
}

/* The shared keys of the class of the object at obj (3.11+ values). */
static uint64_t class_shared_keys(const struct pm_graph *g, uint64_t obj)
{
	const struct referent_layout *rl = referent_layout_for(g->heap->py->minor);
	uint64_t tp, keys;
	return word(g, obj + 8, &tp) &&
	       word(g, tp + (rl ? rl->ht_cached_keys : HT_CACHED_KEYS_FALLBACK), &keys) ?
		keys : 0;
}

/* The name of the __slots__ member at offset of obj's class (or a base). */
static bool slot_name(const struct pm_graph *g, uint64_t obj, uint32_t offset,
		      char *name, size_t size)
{
	uint64_t tp;
	if (!word(g, obj + 8, &tp))
		return false;
	for (int hop = 0; tp && hop < 64; hop++) {
		uint64_t n, meta, meta_size;
		if (word(g, tp + 16, &n) && n && n < MEMBERS_MAX && word(g, tp + 8, &meta) &&
		    word(g, meta + 32, &meta_size)) {
			for (uint64_t i = 0; i < n; i++) {
				uint64_t def = tp + meta_size + 40 * i, name_ptr, off;
				if (!word(g, def, &name_ptr) || !word(g, def + 16, &off))
					break;
				if (off != offset)
					continue;
				struct pm_error *err = pm_target_read_cstr(g->t, name_ptr, name, size);
				bool ok = !err;
				pm_error_destroy(err);
				return ok;
			}
		}
		if (!word(g, tp + TP_BASE, &tp))
			break;
	}
	return false;
}

/* The code object whose locals an edge of node names: a frame object's,
 * a generator's (3.11+, its own interpreter frame). */
static uint64_t locals_code(const struct pm_graph *g, uint32_t node)
{
	const struct referent_layout *rl = referent_layout_for(g->heap->py->minor);
	uint64_t obj = pm_graph_node_addr(g, node), code = 0, frame;
	const char *type = pm_graph_node_type(g, node);
	if (!rl)
		return 0;
	if (g->heap->py->minor <= 10) {
		word(g, obj + rl->f_code, &code);
		return code;
	}
	if (!strcmp(type, "frame")) {
		if (word(g, obj + rl->f11_frame, &frame))
			word(g, frame + rl->if_code, &code);
	} else {
		word(g, obj + rl->gi_iframe + rl->if_code, &code);
	}
	return rl->stackrefs ? pm_stackref_object(code) : code;
}

/* The name of local i of a code object ('x'), or false. */
static bool local_name(const struct pm_graph *g, uint64_t code, uint32_t i,
		       struct pm_strbuf *out)
{
	uint64_t names = 0, name, n;
	if (!code)
		return false;
	if (g->heap->py->minor >= 11) {
		if (!word(g, code + 96, &names))
			return false;
	} else {
		/* co_varnames, then co_cellvars, then co_freevars */
		static const uint32_t tuples[] = { 72, 88, 80 };
		for (size_t k = 0; k < 3; k++) {
			if (!word(g, code + tuples[k], &names) || !names ||
			    !word(g, names + 16, &n))
				return false;
			if (i < n)
				break;
			i -= (uint32_t)n;
			names = 0;
		}
		if (!names)
			return false;
	}
	if (!word(g, names + 16, &n) || i >= n ||
	    !word(g, names + pm_tuple_items(g->heap->py->minor) + 8 * (uint64_t)i, &name))
		return false;
	pm_strbuf_append(out, "'");
	name_text(g, name, out);
	pm_strbuf_append(out, "'");
	return true;
}

/* "f() in path.py" for a code object. */
static void code_text(const struct pm_graph *g, uint64_t code, struct pm_strbuf *out)
{
	bool v311 = g->heap->py->minor >= 11;
	uint64_t name, file;
	if (code && word(g, code + (v311 ? 128 : 112), &name)) {
		name_text(g, name, out);
		pm_strbuf_append(out, "()");
	} else {
		pm_strbuf_append(out, "?()");
	}
	if (code && word(g, code + (v311 ? 112 : 104), &file)) {
		pm_strbuf_append(out, " in ");
		name_text(g, file, out);
	}
}

void pm_graph_edge_text(const struct pm_graph *g, uint32_t from, uint64_t edge,
			struct pm_strbuf *out)
{
	uint64_t obj = pm_graph_node_addr(g, from), key = 0;
	enum pm_edge_kind kind = PM_EDGE_KIND(g->edge_kind[edge]);
	uint32_t label = 0;
	char name[NAME_LEN];
	if (kind != PM_EDGE_SET_ITEM && kind != PM_EDGE_DICT && kind != PM_EDGE_TYPE &&
	    kind != PM_EDGE_WEAK && !pm_graph_edge_label(g, from, edge, &label)) {
		/* Not found again (the object changed?): the kind alone. */
		static const char *const unlabelled[PM_EDGE_KINDS] = {
			[PM_EDGE_ITEM] = "[?]", [PM_EDGE_DICT_KEY] = " (a key)",
			[PM_EDGE_DICT_VALUE] = "[?]", [PM_EDGE_ATTR] = ".<attribute>",
			[PM_EDGE_SLOT] = ".<slot>", [PM_EDGE_FIELD] = " (a field)",
			[PM_EDGE_LOCAL] = " local ?", [PM_EDGE_STACK] = " (value stack)",
			[PM_EDGE_CONSERVATIVE] = " (a word, conservative)",
		};
		pm_strbuf_append(out, kind < PM_EDGE_KINDS && unlabelled[kind] ?
				 unlabelled[kind] : " ?");
		return;
	}
	switch (kind) {
	case PM_EDGE_ITEM:
		pm_strbuf_printf(out, "[%u]", label);
		return;
	case PM_EDGE_DICT_KEY:
		pm_strbuf_printf(out, " (key of entry %u)", label);
		return;
	case PM_EDGE_DICT_VALUE: {
		uint64_t keys, values;
		if (word(g, obj + 32, &keys) && word(g, obj + 40, &values) &&
		    keys_entry_key(g, keys, label, &key)) {
			key_text(g, key, out);
			return;
		}
		pm_strbuf_printf(out, "[<entry %u>]", label);
		return;
	}
	case PM_EDGE_SET_ITEM:
		pm_strbuf_append(out, " (set member)");
		return;
	case PM_EDGE_ATTR: {
		uint64_t keys = class_shared_keys(g, obj);
		if (keys && keys_entry_key(g, keys, label, &key)) {
			pm_strbuf_append(out, ".");
			name_text(g, key, out);
			return;
		}
		pm_strbuf_printf(out, ".<attribute %u>", label);
		return;
	}
	case PM_EDGE_DICT:
		pm_strbuf_append(out, ".__dict__");
		return;
	case PM_EDGE_SLOT:
		if (slot_name(g, obj, label, name, sizeof(name)))
			pm_strbuf_printf(out, ".%s", name);
		else
			pm_strbuf_printf(out, ".<slot at +%u>", label);
		return;
	case PM_EDGE_FIELD:
		if (label == PM_FIELD_SUBCLASSES || label == PM_FIELD_CACHE ||
		    label == PM_FIELD_ITERATED || label == PM_FIELD_RESULT ||
		    label == PM_FIELD_INDEX || label == PM_FIELD_FRAME ||
		    label == PM_FIELD_EXCEPTION || label == PM_FIELD_ORIGIN ||
		    label == PM_FIELD_ODICT_KEY || label == PM_FIELD_PROP_NAME ||
		    label == PM_FIELD_LENGTH)
			pm_strbuf_printf(out, " %s", pm_field_name((enum pm_field)label));
		else
			pm_strbuf_printf(out, ".%s", pm_field_name((enum pm_field)label));
		return;
	case PM_EDGE_TYPE:
		pm_strbuf_append(out, ".__class__");
		return;
	case PM_EDGE_LOCAL:
		pm_strbuf_append(out, " local ");
		if (!local_name(g, locals_code(g, from), label, out))
			pm_strbuf_printf(out, "#%u", label);
		return;
	case PM_EDGE_STACK:
		pm_strbuf_printf(out, " (value stack [%u])", label);
		return;
	case PM_EDGE_CONSERVATIVE:
		if (label == UINT32_MAX)
			pm_strbuf_append(out, " (in a buffer it owns, conservative)");
		else
			pm_strbuf_printf(out, " (word at +%u, conservative)", label);
		return;
	case PM_EDGE_WEAK:
		pm_strbuf_append(out, " (weak reference)");
		return;
	default:
		pm_strbuf_append(out, " ?");
	}
}

/* The module whose writable data holds addr: its file's basename. */
static const char *module_of(const struct pm_graph *g, uint64_t addr)
{
	for (size_t i = 0; i < pm_target_module_count(g->t); i++) {
		const struct pm_module *m = pm_target_module(g->t, i);
		if (addr >= m->start && addr < m->end + (1u << 20)) {
			const char *slash = strrchr(m->path, '/');
			return slash ? slash + 1 : m->path;
		}
	}
	return NULL;
}

enum { TP_NAME_OFFSET = 24 };   /* PyTypeObject.tp_name, after its PyVarObject head */

/* The PyTypeObject fields that hold objects, at their offsets (the same in
 * 3.8-3.13). */
static const char *type_field_name(uint64_t offset)
{
	switch (offset) {
	case 176: return "tp_doc";
	case 256: return "tp_base";
	case 264: return "tp_dict";
	case 336: return "tp_bases";
	case 344: return "tp_mro";
	case 352: return "tp_cache";
	case 360: return "tp_subclasses";
	case 368: return "tp_weaklist";
	default: return NULL;
	}
}

/* A static type object holding addr (one of its fields), or 0; its name in
 * name (size bytes), "?" if unreadable. */
static uint64_t static_type_at(const struct pm_graph *g, uint64_t addr,
			       char *name, size_t size)
{
	for (uint32_t n = g->nheap; n < g->nnodes; n++) {
		uint64_t t = g->static_addr[n - g->nheap];
		if (addr >= t && addr < t + 416) {
			const struct pm_cpython_type *tp = pm_cpython_find_type(g->heap,
										   g->static_type[n - g->nheap]);
			if (tp && tp->kind == TK_TYPE) {
				const struct pm_cpython_type *self = pm_cpython_find_type(g->heap, t);
				uint64_t tp_name;
				struct pm_error *err = NULL;
				if (self)
					snprintf(name, size, "%s", self->name);
				else if ((err = pm_target_read_u64(g->t, t + TP_NAME_OFFSET,
								   &tp_name)) ||
					 (err = pm_target_read_cstr(g->t, tp_name, name, size)))
					snprintf(name, size, "?");
				pm_error_destroy(err);
				return t;
			}
		}
	}
	return 0;
}

void pm_graph_root_text(const struct pm_graph *g, const struct pm_graph_root *r,
			struct pm_strbuf *out)
{
	switch ((enum pm_root_kind)r->kind) {
	case PM_ROOT_SYS_MODULES:
		pm_strbuf_append(out, r->label ? "sys.modules (sub-interpreter)" :
				 "sys.modules");
		return;
	case PM_ROOT_SYSDICT:
		pm_strbuf_append(out, "sys.__dict__");
		return;
	case PM_ROOT_BUILTINS:
		pm_strbuf_append(out, "builtins.__dict__");
		return;
	case PM_ROOT_FRAME:
	case PM_ROOT_FRAME_LOCAL: {
		uint64_t code = r->code;
		if (!code)
			code = locals_code(g, r->node);
		pm_strbuf_printf(out, "thread %d frame ", r->tid);
		code_text(g, code, out);
		if (r->kind == PM_ROOT_FRAME_LOCAL) {
			pm_strbuf_append(out, " local ");
			if (!local_name(g, code, r->label, out))
				pm_strbuf_printf(out, "#%u", r->label);
		}
		return;
	}
	case PM_ROOT_STATIC_DATA: {
		char type_name[80];
		uint64_t t = static_type_at(g, r->where, type_name, sizeof(type_name));
		if (t) {
			const char *field = type_field_name(r->where - t);
			if (field)
				pm_strbuf_printf(out, "static type %s's %s", type_name, field);
			else
				pm_strbuf_printf(out, "static type %s (field at +%" PRIu64 ")",
						 type_name, r->where - t);
			return;
		}
		const char *m = module_of(g, r->where);
		pm_strbuf_printf(out, "static data of %s at 0x%" PRIx64, m ? m : "?",
				 r->where);
		return;
	}
	case PM_ROOT_C_STACK:
		pm_strbuf_printf(out, "C stack of thread %d at 0x%" PRIx64, r->tid, r->where);
		return;
	case PM_ROOT_UNKNOWN_ALLOC: {
		const struct pm_alloc *a = pm_cpython_find_alloc(g->heap, r->where);
		const struct pm_category *c = a && a->category < g->heap->ncategories ?
			&g->heap->categories[a->category] : NULL;
		pm_strbuf_printf(out, "%s %s 0x%" PRIx64 " (word at +%" PRIu64 ")",
				 c ? c->domain : "?", c ? c->kind : "allocation",
				 a ? a->addr : 0, a ? r->where - a->addr : 0);
		return;
	}
	default:
		pm_strbuf_printf(out, "root at 0x%" PRIx64, r->where);
	}
}
