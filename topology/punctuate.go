package topology

import (
	"fmt"
	"slices"
	"time"
)

// punctuator is one scheduled punctuation.
type punctuator struct {
	node      string
	kind      PunctuationType
	interval  time.Duration
	fn        func(ts time.Time) error
	anchored  bool
	next      time.Time // due time, once anchored
	cancelled bool
}

// schedule registers a punctuator for node; see PunctuationType for the
// timing rules.
func (t *Task) schedule(node string, interval time.Duration, kind PunctuationType, fn func(time.Time) error) (func(), error) {
	if interval <= 0 {
		return nil, fmt.Errorf("topology: processor %q: punctuation interval must be positive, got %s", node, interval)
	}
	if kind != StreamTime && kind != WallClockTime {
		return nil, fmt.Errorf("topology: processor %q: unknown punctuation type %s", node, kind)
	}
	if fn == nil {
		return nil, fmt.Errorf("topology: processor %q: nil punctuation function", node)
	}
	if t.phase == phaseClosed {
		return nil, fmt.Errorf("topology: processor %q: Schedule called after the task closed", node)
	}
	p := &punctuator{node: node, kind: kind, interval: interval, fn: fn}
	switch {
	case kind == StreamTime && t.streamKnown:
		p.anchor(t.streamTime)
	case kind == WallClockTime && t.wallKnown:
		p.anchor(t.wallTime)
	}
	t.punctuators = append(t.punctuators, p)
	return func() { p.cancelled = true }, nil
}

func (p *punctuator) anchor(now time.Time) {
	p.anchored = true
	p.next = now.Add(p.interval)
}

// runPunctuators runs the punctuators of kind that are due at now, in the
// order they were scheduled, and stops at the first error. Punctuators
// scheduled while they run wait for the next call.
func (t *Task) runPunctuators(kind PunctuationType, now time.Time) error {
	defer func() {
		t.punctuators = slices.DeleteFunc(t.punctuators, func(p *punctuator) bool { return p.cancelled })
	}()
	for _, p := range slices.Clone(t.punctuators) {
		if p.kind != kind || p.cancelled {
			continue
		}
		if !p.anchored {
			p.anchor(now)
			continue
		}
		if now.Before(p.next) {
			continue
		}
		// Advance to the first grid point after now, so a jump over several
		// intervals runs the punctuator once.
		p.next = p.next.Add((now.Sub(p.next)/p.interval + 1) * p.interval)
		panicked, err := protect(func() error { return p.fn(now) })
		if panicked != nil {
			return &PunctuateError{Node: p.node, Type: kind, Time: now, Err: panicked.err(),
				Panicked: true, PanicValue: panicked.value, Stack: panicked.stack}
		}
		if err != nil {
			return &PunctuateError{Node: p.node, Type: kind, Time: now, Err: err}
		}
	}
	return nil
}
