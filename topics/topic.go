// Package topics turns row changes into webhook topics and JSON payloads.
// It maps tables to resources, names the event of each change, and encodes
// rows as the JSON a REST API would return. It does no I/O.
package topics

import (
	"fmt"
	"strings"
)

// Events of a resource topic.
const (
	EventCreated = "created"
	EventUpdated = "updated"
	EventDeleted = "deleted"
)

// ResourceAction is the resource of every action.<name> topic.
const ResourceAction = "action"

// Topic is a webhook topic: "<resource>.<event>" or "action.<name>".
type Topic struct {
	Resource string
	Event    string
}

// String returns the topic as written in configuration, e.g. "order.updated".
func (t Topic) String() string { return t.Resource + "." + t.Event }

// IsAction reports whether the topic is an action.<name> topic.
func (t Topic) IsAction() bool { return t.Resource == ResourceAction }

// Parse splits and checks the syntax of a topic. It does not check that
// the resource is configured; see Validate.
func Parse(s string) (Topic, error) {
	resource, event, ok := strings.Cut(s, ".")
	if !ok || resource == "" || event == "" {
		return Topic{}, fmt.Errorf("topic %q must be <resource>.<event> or action.<name>", s)
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return Topic{}, fmt.Errorf("topic %q must not contain white space", s)
	}
	t := Topic{Resource: resource, Event: event}
	if t.IsAction() {
		return t, nil
	}
	if !validName(resource) {
		return Topic{}, fmt.Errorf("topic %q: resource %q must be lower-case letters, digits and _", s, resource)
	}
	switch event {
	case EventCreated, EventUpdated, EventDeleted:
		return t, nil
	}
	return Topic{}, fmt.Errorf("topic %q: event %q must be created, updated or deleted", s, event)
}

// Validate checks that a parsed resource topic names one of resources.
// Action topics are always valid.
func (t Topic) Validate(resources func(name string) bool) error {
	if t.IsAction() || resources(t.Resource) {
		return nil
	}
	return fmt.Errorf("topic %q names resource %q, which is not configured under resources", t, t.Resource)
}

// validName reports whether s is a usable resource name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
