// Package cdc reads a PostgreSQL logical replication slot (pgoutput,
// protocol version 2) and hands out the committed transactions of the
// published tables as batches of Changes.
//
// Setup makes sure the publication and the slot exist and describes the
// tables. A Reader streams the slot: it hands out batches on a channel
// owned by the caller, and reports a position to the server only when the
// caller says, through Confirm, that everything up to it is settled. It
// knows nothing of what the changes are used for.
package cdc
