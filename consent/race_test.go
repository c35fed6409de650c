//go:build race

package consent

// raceEnabled: sync.Pool drops items at random under -race, so allocation
// counts are not meaningful.
const raceEnabled = true
