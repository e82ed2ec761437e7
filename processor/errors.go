package processor

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

var (
	// ErrInvalidConfig is wrapped by the error New returns when options are
	// missing or contradict each other; the message lists every problem.
	ErrInvalidConfig = errors.New("processor: invalid configuration")

	// ErrFenced is wrapped by the error Run returns when another process
	// took over this instance's identity: a producer with the same
	// transactional id started (ProducerFenced, InvalidProducerEpoch), or a
	// group member with the same instance id joined (FencedInstanceID).
	// Nothing this instance wrote after the fence is visible to
	// read_committed readers. Do not restart a fenced instance under the
	// same id while the other one runs.
	ErrFenced = errors.New("processor: fenced by another instance with the same id")

	// ErrTopicMissing is wrapped by the error Run returns when a source or
	// sink topic does not exist.
	ErrTopicMissing = errors.New("processor: topic does not exist")

	// ErrNotCopartitioned is wrapped by the error Run returns when the
	// source topics of one sub-topology have different partition counts.
	ErrNotCopartitioned = errors.New("processor: source topics are not co-partitioned")
)

// IsFenced reports whether err means the instance was fenced by another
// one with the same id. It accepts both ErrFenced and the Kafka errors that
// cause it.
func IsFenced(err error) bool {
	return errors.Is(err, ErrFenced) ||
		errors.Is(err, kerr.ProducerFenced) ||
		errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.FencedInstanceID)
}
