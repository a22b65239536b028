package dispatch

import (
	"context"
	"time"

	"github.com/walhook/walhook/state"
)

// Store is what the dispatcher needs of walhook's state schema
// (*state.Store implements it). Every method is one transaction: a failure
// is never counted without its delivery being parked, nor parked without
// being counted. Methods return state.ErrNotFound for a webhook that was
// deleted meanwhile.
type Store interface {
	// Webhooks returns every stored webhook; Revisions every webhook's
	// revision, which moves whenever another process changes it.
	Webhooks(ctx context.Context) ([]state.Webhook, error)
	Revisions(ctx context.Context) (map[int64]int64, error)
	// SyncConfigWebhook records a webhook declared in the configuration;
	// DeleteConfigWebhooksExcept removes the declared ones not in keep.
	SyncConfigWebhook(ctx context.Context, w state.Webhook) (state.Webhook, error)
	DeleteConfigWebhooksExcept(ctx context.Context, keep []int64) ([]int64, error)

	// RecordSuccess resets the failure count; RecordFailure counts
	// failures, parks deliveries and disables as rule (or disable) says.
	RecordSuccess(ctx context.Context, id int64, r state.DeliveryResult) error
	RecordFailure(ctx context.Context, id int64, failures int, r state.DeliveryResult, rule state.DisableRule, disable bool, park []state.Parked) (state.Failure, error)
	RecordPing(ctx context.Context, id int64, ok bool, result string) error

	// ParkedKeys and ParkedCount describe a webhook's parked deliveries.
	ParkedKeys(ctx context.Context, id int64) (map[string]int, error)
	ParkedCount(ctx context.Context, id int64) (rows, bytes int64, err error)
	// ParkedHeads returns each row's oldest parked delivery, due by dueBy,
	// after afterID, in parking order, bounded by limit and maxBytes.
	ParkedHeads(ctx context.Context, id, afterID int64, dueBy time.Time, limit int, maxBytes int64) ([]state.Parked, error)
	// DeleteParked removes delivered ones and records the success.
	DeleteParked(ctx context.Context, id int64, ids []int64, r state.DeliveryResult) (keys []string, bytes int64, err error)
	// RescheduleParked records a failed retry of one.
	RescheduleParked(ctx context.Context, p state.Parked, r state.DeliveryResult, next time.Time, rule state.DisableRule, disable bool) (state.Failure, error)
	// NextParkedAttempt returns the earliest retry time after after.
	NextParkedAttempt(ctx context.Context, id int64, after time.Time) (time.Time, bool, error)
	// TrimParked enforces the park limit, oldest first.
	TrimParked(ctx context.Context, id, maxRows, maxBytes int64) (keys []string, bytes int64, err error)

	// SavePositions records the slot's settled position and each webhook's
	// progress.
	SavePositions(ctx context.Context, slot string, settled state.LSN, progress map[int64]state.Progress) error
}

var _ Store = (*state.Store)(nil)
