package state_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/webhook"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestOpenMigratesOnce(t *testing.T) {
	db := pgtest.NewDatabase(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ { // the second open finds the schema current
		s, err := state.Open(ctx, db, "walhook_state")
		if err != nil {
			t.Fatalf("open %d: %v", i+1, err)
		}
		var version int
		if err := s.Pool().QueryRow(ctx, `SELECT version FROM walhook_state.schema_version`).Scan(&version); err != nil {
			t.Fatal(err)
		}
		if version != 2 {
			t.Fatalf("schema version %d, want 2", version)
		}
		s.Close()
	}
}

func TestMissingPrivilegeNamesTheGrant(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db,
		`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nocreate') THEN CREATE ROLE nocreate LOGIN; END IF; END $$;`,
		`REVOKE CREATE ON DATABASE `+dbName(t, db)+` FROM PUBLIC`)
	u, _ := url.Parse(db)
	u.User = url.User("nocreate")
	_, err := state.Open(context.Background(), u.String(), "walhook")
	if err == nil || !strings.Contains(err.Error(), "GRANT CREATE ON DATABASE") || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("err = %v, want a permission error naming GRANT CREATE ON DATABASE", err)
	}
}

func TestFailuresDisableAndParkTogether(t *testing.T) {
	db := pgtest.NewDatabase(t)
	ctx := context.Background()
	s, err := state.Open(ctx, db, "walhook")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.SyncConfigWebhook(ctx, state.Webhook{ID: 3, Name: "n", Topic: "order.created", DeliveryURL: "https://x.example/", Status: webhook.StatusActive, DefinitionHash: "h"}); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rule := func(count int, since time.Time) bool { return count > 2 && since.Equal(start) }
	for i := 1; i <= 3; i++ {
		at := start.Add(time.Duration(i-1) * time.Minute)
		f, err := s.RecordFailure(ctx, 3, 1, state.DeliveryResult{At: at, Code: 500, Error: "HTTP 500"}, rule, false,
			[]state.Parked{{WebhookID: 3, RowKey: "order/1", Topic: "order.created", DeliveryID: "d", Body: []byte(`{}`), NextAttemptAt: at}})
		if err != nil {
			t.Fatal(err)
		}
		if f.FailureCount != i || f.Disabled != (i == 3) || !f.FailingSince.Equal(start) {
			t.Fatalf("failure %d: count %d disabled %v failing since %v", i, f.FailureCount, f.Disabled, f.FailingSince)
		}
	}
	w, err := s.Webhook(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	rows, _, err := s.ParkedCount(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if w.Status != webhook.StatusDisabled || rows != 3 {
		t.Fatalf("status %s, %d parked; want disabled and 3", w.Status, rows)
	}
	// A known definition keeps the stored runtime status…
	if w, _ = s.SyncConfigWebhook(ctx, state.Webhook{ID: 3, Name: "n", Topic: "order.created", DeliveryURL: "https://x.example/", Status: webhook.StatusActive, DefinitionHash: "h"}); w.Status != webhook.StatusDisabled {
		t.Fatalf("unchanged definition: status %s, want the stored disabled", w.Status)
	}
	// …and a changed one applies the configured status again.
	if w, _ = s.SyncConfigWebhook(ctx, state.Webhook{ID: 3, Name: "n2", Topic: "order.created", DeliveryURL: "https://x.example/", Status: webhook.StatusActive, DefinitionHash: "h2"}); w.Status != webhook.StatusActive || w.FailureCount != 0 {
		t.Fatalf("changed definition: status %s failures %d, want active and 0", w.Status, w.FailureCount)
	}
}

// TestParkedHeads pins the drain's query: one delivery per row (its
// oldest), only due ones, in parking order, bounded by count and bytes.
func TestParkedHeads(t *testing.T) {
	db := pgtest.NewDatabase(t)
	ctx := context.Background()
	s, err := state.Open(ctx, db, "walhook")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.SyncConfigWebhook(ctx, state.Webhook{ID: 1, Name: "n", Topic: "order.created", DeliveryURL: "https://x.example/", Status: webhook.StatusActive, DefinitionHash: "h"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	park := func(row string, due time.Time, size int) {
		t.Helper()
		p := state.Parked{WebhookID: 1, RowKey: row, Topic: "order.created", DeliveryID: "d", Body: make([]byte, size), NextAttemptAt: due}
		if _, err := s.RecordFailure(ctx, 1, 0, state.DeliveryResult{At: now}, nil, false, []state.Parked{p}); err != nil {
			t.Fatal(err)
		}
	}
	park("order/1", now, 10)                 // id 1: head of row 1
	park("order/2", now.Add(time.Hour), 10)  // id 2: head of row 2, not due
	park("order/1", now, 10)                 // id 3: behind id 1
	park("order/3", now, 100)                // id 4: head of row 3
	park("order/4", now, 10)                 // id 5: head of row 4
	park("order/2", now.Add(-time.Hour), 10) // id 6: due, but behind id 2
	ids := func(ps []state.Parked) (out []int64) {
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		after    int64
		dueBy    time.Time
		limit    int
		maxBytes int64
		want     []int64
	}{
		{"due heads", 0, now, 100, 1 << 20, []int64{1, 4, 5}},
		{"all heads", 0, now.Add(2 * time.Hour), 100, 1 << 20, []int64{1, 2, 4, 5}},
		{"after a cursor", 1, now, 100, 1 << 20, []int64{4, 5}},
		{"count bound", 0, now, 2, 1 << 20, []int64{1, 4}},
		{"byte bound", 0, now, 100, 50, []int64{1}},
		{"at least one", 3, now, 100, 1, []int64{4}},
	} {
		got, err := s.ParkedHeads(ctx, 1, tc.after, tc.dueBy, tc.limit, tc.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), tc.want) {
			t.Errorf("%s: heads %v, want %v", tc.name, ids(got), tc.want)
		}
	}
	keys, bytes, err := s.DeleteParked(ctx, 1, []int64{1, 99}, state.DeliveryResult{At: now, Code: 200})
	if err != nil || !slices.Equal(keys, []string{"order/1"}) || bytes != 10 {
		t.Fatalf("DeleteParked: %v %d %v; want [order/1] 10", keys, bytes, err)
	}
	got, err := s.ParkedHeads(ctx, 1, 0, now, 100, 1<<20)
	if err != nil || !slices.Equal(ids(got), []int64{3, 4, 5}) {
		t.Fatalf("after delivering id 1: heads %v %v, want [3 4 5]", ids(got), err)
	}
}

func dbName(t *testing.T, db string) string {
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// TestRecordSuccessResetsFailures pins a bug: RecordSuccess's statement
// failed on its timestamp parameter, so a success after failures left the
// failure count (and the disable it leads to) in place.
func TestRecordSuccessResetsFailures(t *testing.T) {
	db := pgtest.NewDatabase(t)
	ctx := context.Background()
	s, err := state.Open(ctx, db, "walhook")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.SyncConfigWebhook(ctx, state.Webhook{ID: 1, Name: "n", Topic: "order.created", DeliveryURL: "https://x.example/", Status: webhook.StatusActive, DefinitionHash: "h"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := s.RecordFailure(ctx, 1, 2, state.DeliveryResult{At: now, Code: 500, Error: "HTTP 500"}, nil, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSuccess(ctx, 1, state.DeliveryResult{At: now.Add(time.Second), Code: 200}); err != nil {
		t.Fatal(err)
	}
	w, err := s.Webhook(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if w.FailureCount != 0 || w.LastDeliveryCode != 200 {
		t.Errorf("after a success: failure count %d, last code %d; want 0 and 200", w.FailureCount, w.LastDeliveryCode)
	}
}
