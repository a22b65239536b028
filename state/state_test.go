package state_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/state"
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
		if version != 1 {
			t.Fatalf("schema version %d, want 1", version)
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
	if _, err := s.SyncConfigWebhook(ctx, state.Webhook{ID: 3, Name: "n", Topic: "order.created", DeliveryURL: "https://x.example/", Status: state.StatusActive, DefinitionHash: "h"}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		f, err := s.RecordFailure(ctx, 3, 1, state.DeliveryResult{Code: 500, Error: "HTTP 500"}, 2, false,
			[]state.Parked{{WebhookID: 3, RowKey: "order/1", Topic: "order.created", DeliveryID: "d", Body: []byte(`{}`)}})
		if err != nil {
			t.Fatal(err)
		}
		if f.FailureCount != i || f.Disabled != (i == 3) {
			t.Fatalf("failure %d: count %d disabled %v", i, f.FailureCount, f.Disabled)
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
	if w.Status != state.StatusDisabled || rows != 3 {
		t.Fatalf("status %s, %d parked; want disabled and 3", w.Status, rows)
	}
	// A known definition keeps the stored runtime status…
	if w, _ = s.SyncConfigWebhook(ctx, state.Webhook{ID: 3, Name: "n", Topic: "order.created", DeliveryURL: "https://x.example/", Status: state.StatusActive, DefinitionHash: "h"}); w.Status != state.StatusDisabled {
		t.Fatalf("unchanged definition: status %s, want the stored disabled", w.Status)
	}
	// …and a changed one applies the configured status again.
	if w, _ = s.SyncConfigWebhook(ctx, state.Webhook{ID: 3, Name: "n2", Topic: "order.created", DeliveryURL: "https://x.example/", Status: state.StatusActive, DefinitionHash: "h2"}); w.Status != state.StatusActive || w.FailureCount != 0 {
		t.Fatalf("changed definition: status %s failures %d, want active and 0", w.Status, w.FailureCount)
	}
}

func dbName(t *testing.T, db string) string {
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}
