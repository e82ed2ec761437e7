// Package examples holds runnable example topologies, each with a test that
// runs it against the broker the suite is pointed at (kfake by default).
package examples
