package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/config"
)

// checkExcludedColumns refuses, at start, exclude_columns that the
// configuration cannot be checked for offline:
//
//   - a column the table does not have: most likely a typo, which would
//     let the real column leave the process in every payload;
//   - a key column: a deleted event carries only the key columns, so its
//     body would be empty, and receivers could not tell rows apart.
//
// It reads the tables' columns from the catalog; infos give their keys.
func checkExcludedColumns(ctx context.Context, pool *pgxpool.Pool, rs []config.Resource, infos []cdc.TableInfo) error {
	keys := make(map[string][]string, len(infos))
	for _, ti := range infos {
		keys[ti.Schema+"."+ti.Name] = ti.KeyColumns
	}
	var problems []error
	for _, r := range rs {
		if len(r.ExcludeColumns) == 0 {
			continue
		}
		qn := r.Schema + "." + r.Table
		rows, _ := pool.Query(ctx, `
			SELECT a.attname::text
			FROM pg_attribute a
			JOIN pg_class c ON c.oid = a.attrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
			ORDER BY a.attnum`, r.Schema, r.Table)
		columns, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("resource %q: read the columns of table %s: %w", r.Name, qn, err)
		}
		for _, col := range r.ExcludeColumns {
			switch {
			case !slices.Contains(columns, col):
				problems = append(problems, fmt.Errorf("resource %q: exclude_columns names column %q, which table %s does not have (its columns: %s); correct the name, or the column it meant would be sent",
					r.Name, col, qn, columnList(columns)))
			case slices.Contains(keys[qn], col):
				problems = append(problems, fmt.Errorf("resource %q: exclude_columns names %q, a key column of table %s; deleted events carry only the key columns and every event is ordered by them, so key columns cannot be excluded",
					r.Name, col, qn))
			}
		}
	}
	return errors.Join(problems...)
}

// columnList names columns for a message, at most 20 of them.
func columnList(columns []string) string {
	const most = 20
	if len(columns) > most {
		return strings.Join(columns[:most], ", ") + fmt.Sprintf(" and %d more", len(columns)-most)
	}
	return strings.Join(columns, ", ")
}
