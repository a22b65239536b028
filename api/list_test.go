package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestList(t *testing.T) {
	e := newEnv(t)
	day := func(d, h int) time.Time { return time.Date(2026, 1, d, h, 0, 0, 0, time.UTC) }
	seed := []struct {
		name, status    string
		created, modded time.Time
	}{
		{"Alpha", "active", day(1, 10), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
		{"bravo", "paused", day(2, 10), day(5, 0)},
		{"Charlie", "disabled", day(3, 10), day(3, 10)},
		{"alpha two", "active", day(4, 10), day(4, 10)},
		{"Echo", "active", day(5, 10), day(6, 0)},
	}
	for i, s := range seed {
		h := e.create(strings.ReplaceAll(s.name, " ", "-"), "order.created")
		if h.ID != int64(i+1) {
			t.Fatalf("id %d, want %d", h.ID, i+1)
		}
		_, err := e.store.Pool().Exec(context.Background(),
			`UPDATE walhook.webhooks SET name = $2, status = $3, date_created = $4, date_modified = $5 WHERE id = $1`,
			h.ID, s.name, s.status, s.created, s.modded)
		if err != nil {
			t.Fatal(err)
		}
	}
	base := e.tls.URL + "/wp-json/wc/v3/webhooks?"
	tests := []struct {
		query       string
		ids         string
		total, page string
		links       []string
	}{
		{query: "", ids: "5 4 3 2 1", total: "5", page: "1"},
		{query: "per_page=2", ids: "5 4", total: "5", page: "3", links: []string{`<` + base + `per_page=2&page=2>; rel="next"`}},
		{query: "per_page=2&page=2", ids: "3 2", total: "5", page: "3", links: []string{`<` + base + `per_page=2&page=1>; rel="prev"`, `<` + base + `per_page=2&page=3>; rel="next"`}},
		{query: "page=3&per_page=2", ids: "1", total: "5", page: "3", links: []string{`<` + base + `per_page=2&page=2>; rel="prev"`}},
		{query: "per_page=2&page=9", ids: "", total: "5", page: "3", links: []string{`<` + base + `per_page=2&page=3>; rel="prev"`}},
		{query: "per_page=2&offset=1", ids: "4 3", total: "5", page: "3", links: []string{`<` + base + `per_page=2&offset=1&page=1>; rel="prev"`, `<` + base + `per_page=2&offset=1&page=3>; rel="next"`}},
		{query: "per_page=1", ids: "5", total: "5", page: "5", links: []string{`<` + base + `per_page=1&page=2>; rel="next"`}},
		// The WooCommerce JavaScript client sends every parameter twice.
		{query: "per_page=2&page=2&oauth_nonce=x&per_page=2&page=2", ids: "3 2", total: "5", page: "3", links: []string{`<` + base + `per_page=2&page=1>; rel="prev"`, `<` + base + `per_page=2&page=3>; rel="next"`}},
		{query: "order=asc", ids: "1 2 3 4 5", total: "5", page: "1"},
		{query: "orderby=id", ids: "5 4 3 2 1", total: "5", page: "1"},
		{query: "orderby=title&order=asc", ids: "1 4 2 3 5", total: "5", page: "1"},
		{query: "orderby=slug&order=desc", ids: "5 3 2 4 1", total: "5", page: "1"},
		{query: "orderby=include&include=3,1,5", ids: "3 1 5", total: "3", page: "1"},
		{query: "include[]=2&include[]=4", ids: "4 2", total: "2", page: "1"},
		{query: "include%5B0%5D=2&include%5B1%5D=4", ids: "4 2", total: "2", page: "1"},
		{query: "exclude=1,2", ids: "5 4 3", total: "3", page: "1"},
		{query: "status=active", ids: "5 4 1", total: "3", page: "1"},
		{query: "status=paused", ids: "2", total: "1", page: "1"},
		{query: "status=all&search=ALPHA", ids: "4 1", total: "2", page: "1"},
		{query: "after=2026-01-03T10:00:00&dates_are_gmt=true", ids: "5 4", total: "2", page: "1"},
		{query: "after=2026-01-03T12:00:00", ids: "5 4 3", total: "3", page: "1"},
		{query: "before=2026-01-02T10:00:00Z", ids: "1", total: "1", page: "1"},
		{query: "after=2026-01-01T00:00:00%2B00:00&before=2026-01-04T11:30:00%2B01:00", ids: "4 3 2 1", total: "4", page: "1"},
		{query: "modified_after=2026-01-05T12:00:00Z", ids: "5 1", total: "2", page: "1"},
		{query: "modified_before=2026-01-04T00:00:01Z", ids: "3", total: "1", page: "1"},
		{query: "status=disabled&search=zzz", ids: "", total: "0", page: "0"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			r := e.do("GET", "/wp-json/wc/v3/webhooks?"+tc.query, nil)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			var got []hook
			r.json(t, &got)
			var ids []string
			for _, h := range got {
				ids = append(ids, fmt.Sprint(h.ID))
				if h.Secret != nil {
					t.Errorf("secret listed in view context")
				}
			}
			if s := strings.Join(ids, " "); s != tc.ids {
				t.Errorf("ids = %q, want %q", s, tc.ids)
			}
			if r.header.Get("X-WP-Total") != tc.total || r.header.Get("X-WP-TotalPages") != tc.page {
				t.Errorf("X-WP-Total %s X-WP-TotalPages %s, want %s %s", r.header.Get("X-WP-Total"), r.header.Get("X-WP-TotalPages"), tc.total, tc.page)
			}
			if l := r.header.Values("Link"); strings.Join(l, "\n") != strings.Join(tc.links, "\n") {
				t.Errorf("Link = %q, want %q", l, tc.links)
			}
		})
	}

	bad := []struct{ query, params string }{
		{"per_page=0", "per_page"}, {"per_page=101", "per_page"}, {"per_page=x", "per_page"},
		{"page=0", "page"}, {"order=up", "order"}, {"orderby=name", "orderby"}, {"status=gone", "status"},
		{"include=a", "include"}, {"exclude[]=1.5", "exclude"}, {"after=yesterday", "after"}, {"before=2026-13-01", "before"},
		{"dates_are_gmt=perhaps", "dates_are_gmt"}, {"offset=-1", "offset"}, {"context=all", "context"},
		{"per_page=0&order=up", "order,per_page"}, {"search[]=x", "search"},
	}
	for _, tc := range bad {
		t.Run("bad "+tc.query, func(t *testing.T) {
			r := e.do("GET", "/wp-json/wc/v3/webhooks?"+tc.query, nil)
			var body struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Data    struct {
					Status int               `json:"status"`
					Params map[string]string `json:"params"`
				} `json:"data"`
			}
			r.json(t, &body)
			if r.status != 400 || body.Code != "rest_invalid_param" || body.Data.Status != 400 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if names := strings.Join(sortedKeys(body.Data.Params), ","); names != tc.params {
				t.Errorf("params %v, want %s", body.Data.Params, tc.params)
			}
			if body.Message != "Invalid parameter(s): "+strings.ReplaceAll(tc.params, ",", ", ") {
				t.Errorf("message %q", body.Message)
			}
		})
	}
}
