//go:build race

package pseudonymize

// raceEnabled: sync.Pool drops items at random under the race detector.
const raceEnabled = true
