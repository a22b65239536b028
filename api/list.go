package api

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/webhook"
)

// listQuery is a list request's filters and paging.
type listQuery struct {
	context        string
	page, perPage  int64
	offset         int64
	hasOffset      bool
	search         string
	after, before  time.Time
	modAfter       time.Time
	modBefore      time.Time
	include        []int64
	exclude        []int64
	order, orderby string
	status         string
}

// Orderby values: WooCommerce's controller accepts date, id and title;
// its documentation also lists include (the order of the include list)
// and slug (walhook's webhooks have no slug; it sorts as title). Titles
// sort case-insensitively, as MySQL's default collation does.
var orderbyValues = []string{"date", "id", "include", "title", "slug"}

func (a *API) readListQuery(params map[string]any) (listQuery, *apiError) {
	p := newParamReader(params)
	q := listQuery{
		context: p.enum("context", contextView, contextView, contextEdit),
		page:    p.integer("page", 1, 1, math.MaxInt64),
		perPage: p.integer("per_page", 10, 1, 100),
		order:   p.enum("order", "desc", "asc", "desc"),
		orderby: p.enum("orderby", "date", orderbyValues...),
		status:  p.enum("status", "all", append([]string{"all"}, statusNames(webhook.Statuses)...)...),
		include: p.intList("include"),
		exclude: p.intList("exclude"),
	}
	q.search, _ = p.str("search")
	if p.has("offset") {
		q.offset, q.hasOffset = p.integer("offset", 0, 0, math.MaxInt64), true
	}
	loc := a.tz
	if p.boolean("dates_are_gmt", false) {
		loc = time.UTC
	}
	q.after, _ = p.date("after", loc)
	q.before, _ = p.date("before", loc)
	q.modAfter, _ = p.date("modified_after", loc)
	q.modBefore, _ = p.date("modified_before", loc)
	return q, p.err()
}

// match reports whether w passes the filters.
func (q *listQuery) match(w state.Webhook) bool {
	switch {
	case q.status != "all" && string(w.Status) != q.status,
		len(q.include) > 0 && !slices.Contains(q.include, w.ID),
		slices.Contains(q.exclude, w.ID),
		q.search != "" && !strings.Contains(strings.ToLower(w.Name), strings.ToLower(q.search)),
		!q.after.IsZero() && !w.DateCreated.After(q.after),
		!q.before.IsZero() && !w.DateCreated.Before(q.before),
		!q.modAfter.IsZero() && !w.DateModified.After(q.modAfter),
		!q.modBefore.IsZero() && !w.DateModified.Before(q.modBefore):
		return false
	}
	return true
}

// sort orders hooks as asked; ties are broken by id.
func (q *listQuery) sort(hooks []state.Webhook) {
	if q.orderby == "include" && len(q.include) > 0 {
		slices.SortStableFunc(hooks, func(x, y state.Webhook) int {
			return slices.Index(q.include, x.ID) - slices.Index(q.include, y.ID)
		})
		return
	}
	slices.SortFunc(hooks, func(x, y state.Webhook) int {
		var c int
		switch q.orderby {
		case "title", "slug":
			c = strings.Compare(strings.ToLower(x.Name), strings.ToLower(y.Name))
		case "date":
			c = x.DateCreated.Compare(y.DateCreated)
		}
		if c == 0 {
			c = cmp.Compare(x.ID, y.ID)
		}
		if q.order == "desc" {
			return -c
		}
		return c
	})
}

// list answers the collection with WordPress's paging headers: X-WP-Total,
// X-WP-TotalPages and Link rel="prev"/"next".
func (a *API) list(rq *request) (int, any, *apiError) {
	q, perr := a.readListQuery(rq.params)
	if perr != nil {
		return 0, nil, perr
	}
	all, err := a.store.Webhooks(rq.Context())
	if err != nil {
		return 0, nil, a.internal(rq.Context(), "listed", err)
	}
	hooks := all[:0]
	for _, w := range all {
		if q.match(w) {
			hooks = append(hooks, w)
		}
	}
	q.sort(hooks)

	total := int64(len(hooks))
	page, offset := q.page, total
	if q.page <= math.MaxInt64/q.perPage { // else (page-1)*perPage would overflow: past the end
		offset = (q.page - 1) * q.perPage
	}
	if q.hasOffset {
		offset = q.offset
		page = min(ceilDiv(offset, q.perPage), math.MaxInt64-1) + 1
	}
	out := make([]webhookJSON, 0, q.perPage)
	if offset < total {
		for _, w := range hooks[offset:min(total, offset+q.perPage)] {
			out = append(out, a.shape(rq.Request, w, q.context))
		}
	}

	maxPages := ceilDiv(total, q.perPage)
	h := rq.w.Header()
	h.Set("X-WP-Total", strconv.FormatInt(total, 10))
	h.Set("X-WP-TotalPages", strconv.FormatInt(maxPages, 10))
	if page > 1 {
		h.Add("Link", fmt.Sprintf(`<%s>; rel="prev"`, a.pageURL(rq, min(page-1, max(maxPages, 1)))))
	}
	if maxPages > page {
		h.Add("Link", fmt.Sprintf(`<%s>; rel="next"`, a.pageURL(rq, page+1)))
	}
	return http.StatusOK, out, nil
}

// authParams are query parameters that carry credentials; they are left
// out of Link URLs.
func authParam(name string) bool {
	return strings.HasPrefix(name, "oauth_") || name == "consumer_key" || name == "consumer_secret"
}

// pageURL is the collection URL with the request's query parameters
// (without credentials, each distinct pair once) and page set to n.
func (a *API) pageURL(rq *request, n int64) string {
	var b strings.Builder
	seen := make(map[string]bool)
	for pair := range strings.SplitSeq(rq.URL.RawQuery, "&") {
		k, _, _ := strings.Cut(pair, "=")
		name, _, _ := splitPHPKey(phpURLDecode(k))
		if pair == "" || name == "page" || authParam(name) || seen[pair] {
			continue
		}
		seen[pair] = true
		b.WriteString(pair)
		b.WriteByte('&')
	}
	b.WriteString("page=" + strconv.FormatInt(n, 10))
	return restURL(rq.Request, "/wc/v3/webhooks") + "?" + b.String()
}

// ceilDiv returns a/b rounded up, for a ≥ 0 and b > 0, without
// overflowing for a near math.MaxInt64.
func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a-1)/b + 1
}
