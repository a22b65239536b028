package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/walhook/walhook/state"
)

// cmdWebhooks lists or changes webhooks in the state schema. A running
// walhook notices a change within about a second.
func cmdWebhooks(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("webhooks: want list, enable, pause, disable or discard")
	}
	action := args[0]
	fs, path := configFlag("webhooks "+action, args[1:])
	// Flags may come before or after the ID.
	var positional []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return exitError{2}
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	store, err := state.Open(ctx, cfg.Postgres.URL.Reveal(), cfg.Postgres.StateSchema)
	if err != nil {
		return err
	}
	defer store.Close()
	if action == "list" {
		hooks, err := store.Webhooks(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tTOPIC\tSTATUS\tFAILURES\tPARKED\tLAST DELIVERY\tORIGIN")
		for _, w := range hooks {
			parked, _, err := store.ParkedCount(ctx, w.ID)
			if err != nil {
				return err
			}
			last := "never"
			if !w.LastDeliveryAt.IsZero() {
				last = fmt.Sprintf("%s HTTP %d", w.LastDeliveryAt.UTC().Format(time.RFC3339), w.LastDeliveryCode)
				if w.LastDeliveryErr != "" {
					last += " (" + w.LastDeliveryErr + ")"
				}
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", w.ID, w.Name, w.Topic, w.Status, w.FailureCount, parked, last, w.Origin)
		}
		return tw.Flush()
	}
	if len(positional) != 1 {
		return fmt.Errorf("webhooks %s: want one webhook ID", action)
	}
	id, err := strconv.ParseInt(positional[0], 10, 64)
	if err != nil {
		return fmt.Errorf("webhooks %s: %q is not a webhook ID", action, positional[0])
	}
	var status string
	switch action {
	case "enable":
		status = state.StatusActive
	case "pause":
		status = state.StatusPaused
	case "disable":
		status = state.StatusDisabled
	case "discard":
		n, err := store.DiscardParked(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "webhook %d: %d parked deliveries discarded\n", id, n)
		return nil
	default:
		return fmt.Errorf("webhooks: unknown action %q (want list, enable, pause, disable or discard)", action)
	}
	w, err := store.UpdateWebhook(ctx, id, func(w *state.Webhook) error {
		w.Status = status
		return nil
	})
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("webhooks %s: no webhook with ID %d", action, id)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "webhook %d is now %s\n", w.ID, w.Status)
	return nil
}
