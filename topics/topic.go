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
	// EventAll makes a wildcard topic, "<resource>.*": the resource's
	// created, updated and deleted events through one webhook. Events
	// themselves never have it.
	EventAll = "*"
)

// resourceEvents are the events of a resource, in the order of a row's life.
var resourceEvents = [...]string{EventCreated, EventUpdated, EventDeleted}

// ResourceAction is the resource of every action.<name> topic.
const ResourceAction = "action"

// Topic is a webhook topic: "<resource>.<event>", "<resource>.*" or
// "action.<name>".
type Topic struct {
	Resource string
	Event    string
}

// String returns the topic as written in configuration, e.g. "order.updated".
func (t Topic) String() string { return t.Resource + "." + t.Event }

// IsAction reports whether the topic is an action.<name> topic.
func (t Topic) IsAction() bool { return t.Resource == ResourceAction }

// IsWildcard reports whether the topic is "<resource>.*". ("action.*" is
// the action named "*", as it always was.)
func (t Topic) IsWildcard() bool { return t.Event == EventAll && !t.IsAction() }

// Matches reports whether a webhook of topic t receives an event of topic
// e: the same topic, or e is a created, updated or deleted event of the
// resource of the wildcard t.
func (t Topic) Matches(e Topic) bool {
	if t.IsWildcard() {
		return e.Resource == t.Resource && (e.Event == EventCreated || e.Event == EventUpdated || e.Event == EventDeleted)
	}
	return t == e
}

// Events returns the topics of the events a webhook of topic t receives:
// the three of a wildcard, else t itself.
func (t Topic) Events() []Topic {
	if !t.IsWildcard() {
		return []Topic{t}
	}
	out := make([]Topic, len(resourceEvents))
	for i, e := range resourceEvents {
		out[i] = Topic{Resource: t.Resource, Event: e}
	}
	return out
}

// Parse splits and checks the syntax of a topic. It does not check that
// the resource is configured; see Validate.
func Parse(s string) (Topic, error) {
	resource, event, ok := strings.Cut(s, ".")
	if !ok || resource == "" || event == "" {
		return Topic{}, fmt.Errorf("topic %q must be <resource>.<event>, <resource>.* or action.<name>", s)
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
	case EventCreated, EventUpdated, EventDeleted, EventAll:
		return t, nil
	}
	return Topic{}, fmt.Errorf("topic %q: event %q must be created, updated, deleted or * (all three)", s, event)
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
