/* The HTML report: one self-contained page (`pymortem report -o FILE`, GDB's
 * `heap report FILE`) that shows the main reports at a glance. It runs the
 * existing reports in JSON and embeds their documents, as they are, in the
 * page that lib/html/ holds (inlined at build time by lib/html/embed.py);
 * the page's script draws everything from that data. Nothing here analyses
 * anything of its own, so the page says what the JSON reports say.
 *
 * Size: every embedded report is aggregated (rows by type, by region, per
 * arena, the top retainers and waste examples), never one element per
 * allocation, and each has a row limit below; a report whose JSON still
 * exceeds REPORT_JSON_MAX is replaced by an error naming the command that
 * gives it in full.
 *
 * Given a snapshot of an earlier state too (pm_report_html_diff), the page
 * also embeds the diff from it (diff's JSON: every row's change, and for
 * the same process the new and gone allocations by type with examples),
 * which the page shows as its "Growth" section. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "report_html_page.h"

/* No embedded report may grow the page past a few MB: beyond this size
 * (e.g. regions of a process with tens of thousands of mappings), the
 * report is named, not embedded. */
#define REPORT_JSON_MAX (4u << 20)

struct html_report {
	const char *key;        /* the page's name for it (DATA.reports.KEY) */
	const char *report;     /* the library report */
	const char *by;
	long top;
	const char *command;    /* the CLI command giving the same JSON */
};

/* The page's reports and their row limits, in the order they run (the
 * CLI's options of `command`, run alone, give the same documents: the tests
 * compare the page with them). */
static const struct html_report html_reports[] = {
	/* First: a region's label lists its areas in the order the walks that
	 * found them ran, which the later reports would change. */
	{"regions", "regions", NULL, 0, "regions --json"},
	{"info", "info", NULL, 0, "info --json"},
	{"summary", "summary", NULL, 300, "summary --top 300 --json"},
	{"owners", "summary", "owner", 300, "summary --by owner --top 300 --json"},
	{"rss", "rss", NULL, 200, "rss --top 200 --json"},
	{"fragmentation", "fragmentation", NULL, 0, "fragmentation --json"},
	{"retained", "retained", NULL, 25, "retained --top 25 --json"},
	{"suspects", "suspects", NULL, 0, "suspects --json"},
	{"waste", "waste", NULL, 10, "waste --top 10 --json"},
};

#define NHTML_REPORTS (sizeof(html_reports) / sizeof(html_reports[0]))

/* The diff embedded with pm_report_html_diff, as the CLI gives it. */
enum { DIFF_TOP = 300, DIFF_EXAMPLES = 5 };
#define DIFF_COMMAND "diff --json --top 300 --limit 5 BEFORE"

/* JSON text inside a <script> element: a "<" can only be inside a JSON
 * string, where "\u003c" means the same, and without it no "</script>" or
 * "<!--" from target data (paths, previews) can end the element early. */
static void append_script_safe(struct pm_strbuf *out, const char *json)
{
	const char *p = json;
	for (;;) {
		const char *lt = strchr(p, '<');
		if (!lt) {
			pm_strbuf_append(out, p);
			return;
		}
		pm_strbuf_appendn(out, p, (size_t)(lt - p));
		pm_strbuf_append(out, "\\u003c");
		p = lt + 1;
	}
}

/* Errors that leave nothing true to show (the process exited, Ctrl-C, no
 * memory) stop the page; any other is that report's part of the page. */
static bool stops_the_page(const struct pm_error *err)
{
	return err->code == PM_ERR_INTERRUPTED || err->code == PM_ERR_EXITED ||
	       err->code == PM_ERR_NO_MEMORY;
}

/* A report's JSON, or the error that names the command giving it when it
 * is larger than the page embeds. */
static void append_bounded(struct pm_strbuf *out, const char *report, const char *command,
			   const char *json)
{
	size_t len = strlen(json);
	if (len > REPORT_JSON_MAX) {
		char message[256];
		snprintf(message, sizeof(message),
			 "the %s report is %zu bytes of JSON, more than this page embeds "
			 "(%u); `pymortem %s TARGET` gives it", report, len, REPORT_JSON_MAX, command);
		pm_strbuf_append(out, "{\"error\": ");
		pm_strbuf_json_string(out, message);
		pm_strbuf_append(out, "}");
	} else {
		append_script_safe(out, json);
	}
}

static struct pm_error *append_report(struct pm_target *t,
				      const struct html_report *r,
				      struct pm_strbuf *out)
{
	struct pm_report_args args = {
		.format = PM_FORMAT_JSON,
		.by = r->by,
		.top = r->top,
	};
	char *json = NULL;
	struct pm_error *err = pm_report_run(t, r->report, &args, &json);
	pm_strbuf_append(out, "\"");
	pm_strbuf_append(out, r->key);
	pm_strbuf_append(out, "\": ");
	if (err) {
		if (stops_the_page(err))
			return err;
		pm_strbuf_append(out, "{\"error\": ");
		pm_strbuf_json_string(out, err->message);
		pm_strbuf_append(out, "}");
		pm_error_destroy(err);
		return NULL;
	}
	append_bounded(out, r->report, r->command, json);
	free(json);
	return NULL;
}

/* The page's data: who made it, what the target is, how each report was
 * run, and the reports. */
static struct pm_error *append_data(struct pm_target *t, const char *source,
				    const char *diff_json, struct pm_strbuf *out)
{
	pm_strbuf_append(out, "{\"pymortem\": \"" PM_VERSION "\", \"source\": ");
	if (source) {
		struct pm_strbuf name;
		pm_strbuf_init(&name);
		pm_strbuf_json_string(&name, source);
		append_script_safe(out, name.data ? name.data : "null");
		if (name.failed)
			out->failed = true;
		pm_strbuf_deinit(&name);
	} else {
		pm_strbuf_append(out, "null");
	}
	pm_strbuf_append(out, ",\n\"commands\": {");
	for (size_t i = 0; i < NHTML_REPORTS; i++)
		pm_strbuf_printf(out, "%s\"%s\": \"pymortem %s\"", i ? ", " : "",
				 html_reports[i].key, html_reports[i].command);
	pm_strbuf_append(out, "},\n");
	if (diff_json) {
		pm_strbuf_append(out, "\"diff_command\": \"pymortem " DIFF_COMMAND "\",\n\"diff\": ");
		append_bounded(out, "diff", DIFF_COMMAND, diff_json);
		pm_strbuf_append(out, ",\n");
	}
	pm_strbuf_append(out, "\"reports\": {\n");
	for (size_t i = 0; i < NHTML_REPORTS; i++) {
		if (i)
			pm_strbuf_append(out, ",\n");
		struct pm_error *err = append_report(t, &html_reports[i], out);
		if (err)
			return err;
	}
	pm_strbuf_append(out, "\n}}");
	return NULL;
}

static struct pm_error *html_page(struct pm_target *t, const char *source,
				   const char *diff_json, char **ret)
{
	*ret = NULL;
	static const char marker[] = "@PM_DATA@";
	const char *page = (const char *)pm_report_html_page;
	size_t page_len = PM_REPORT_HTML_PAGE_LEN;
	/* embed.py checked the marker is there once; find it without
	 * assuming the page is NUL-terminated. */
	size_t at = 0;
	while (at + sizeof(marker) - 1 <= page_len &&
	       memcmp(page + at, marker, sizeof(marker) - 1) != 0)
		at++;
	if (at + sizeof(marker) - 1 > page_len)
		return pm_error_format(PM_ERR_INVALID,
				       "the built-in report page has no data marker");
	struct pm_strbuf out;
	pm_strbuf_init(&out);
	pm_strbuf_appendn(&out, page, at);
	struct pm_error *err = append_data(t, source, diff_json, &out);
	if (err) {
		pm_strbuf_deinit(&out);
		return err;
	}
	at += sizeof(marker) - 1;
	pm_strbuf_appendn(&out, page + at, page_len - at);
	*ret = pm_strbuf_steal(&out);
	return *ret ? NULL : &pm_error_no_memory;
}

struct pm_error *pm_report_html(struct pm_target *t, const char *source, char **ret)
{
	return html_page(t, source, NULL, ret);
}

struct pm_error *pm_report_html_diff(struct pm_target *t, const char *source,
				     const struct pm_snapshot *before,
				     struct pm_target *before_target, char **ret)
{
	*ret = NULL;
	struct pm_snapshot *after = NULL;
	struct pm_error *err = pm_snapshot_take(t, source, &after);
	char *diff_json = NULL;
	if (!err) {
		struct pm_report_args args = {
			.format = PM_FORMAT_JSON,
			.top = DIFF_TOP,
			.limit = DIFF_EXAMPLES,
		};
		err = pm_diff_run(before, after, before_target, t, &args, &diff_json);
	}
	pm_snapshot_destroy(after);
	if (!err)
		err = html_page(t, source, diff_json, ret);
	free(diff_json);
	return err;
}
