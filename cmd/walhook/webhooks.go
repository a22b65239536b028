package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/webhook"
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
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", w.ID, cell(w.Name, nameWidth), cell(w.Topic, topicWidth),
				cell(string(w.Status), statusWidth), w.FailureCount, parked, cell(last, lastWidth), cell(w.Origin, statusWidth))
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
	var status webhook.Status
	switch action {
	case "enable":
		status = webhook.StatusActive
	case "pause":
		status = webhook.StatusPaused
	case "disable":
		status = webhook.StatusDisabled
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

// Widths, in characters, of the text columns of `webhooks list`.
const (
	nameWidth   = 40
	topicWidth  = 40
	statusWidth = 10
	lastWidth   = 60
)

// cell returns s made safe to print in a terminal table of at most width
// characters: what a terminal would act on (control characters such as
// ESC, CR, LF and tab, Unicode format characters such as bidirectional
// overrides) and bytes that are not UTF-8 are written as Go escapes (\x1b,
// \r, \u202e, \xff), a backslash as \\, and a longer result is cut with
// "…". Names and topics come from the management API, so from anyone
// holding a write key.
func cell(s string, width int) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1:
			piece = fmt.Sprintf(`\x%02x`, s[i])
		case r == '\\':
			piece = `\\`
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || !unicode.IsPrint(r) && r != ' ':
			q := strconv.QuoteRuneToASCII(r)
			piece = q[1 : len(q)-1]
		default:
			piece = s[i : i+size]
		}
		pieceLen := utf8.RuneCountInString(piece)
		if n+pieceLen > width-1 && i+size < len(s) || n+pieceLen > width {
			b.WriteString("…")
			break
		}
		b.WriteString(piece)
		n += pieceLen
		i += size
	}
	return b.String()
}
