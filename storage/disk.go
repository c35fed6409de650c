package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"
)

// DefaultMinFreeBytes is the default Config.MinFreeBytes, 576 MiB.
//
// Badger writes through memory maps of sparse files, so running out of
// space is not an error it could return but a SIGBUS that kills the
// process. The store therefore stops growing while there is still room for
// everything Badger may write after the last accepted commit, before it
// deletes anything:
//   - the value-log file being written, mapped at twice valueLogFileSize
//     (2×64 MiB);
//   - the memtable's write-ahead log, mapped at twice memTableSize
//     (2×32 MiB);
//   - the flush of all numMemtables memtables (3×32 MiB) into level-0
//     tables, each written before its write-ahead log is deleted.
//
// That is 288 MiB; it is doubled because compactions write their output
// before they delete their input, and because the embedded JetStream store
// shares the filesystem by default.
const DefaultMinFreeBytes = 2 * (2*valueLogFileSize + 2*memTableSize + numMemtables*memTableSize)

// Defaults of the free-space monitor.
const (
	defaultDiskCheckInterval = time.Second
	// Between two timed measurements, Append's writes trigger one as soon
	// as they add up to a quarter of the headroom (free space above
	// MinFreeBytes), within these bounds. The quarter allows for Badger's
	// write amplification (value log, write-ahead log, level-0 table).
	minDiskCheckBytes = 1 << 20
	maxDiskCheckBytes = 8 << 20
	// entryOverhead approximates Badger's per-entry header and checksum.
	entryOverhead = 24
)

// DiskStatus is the state of the free-space monitor.
type DiskStatus struct {
	// Full reports that writes growing the disk are refused (ErrDiskFull).
	Full bool
	// FreeBytes is the smallest free space of the watched filesystems at
	// the last measurement (0 before the first).
	FreeBytes uint64
	// MinFreeBytes is Config.MinFreeBytes; writes resume at ResumeBytes.
	MinFreeBytes, ResumeBytes uint64
}

// Disk returns the free-space monitor's state. It is three atomic loads,
// cheap enough for every request.
func (s *Store) Disk() DiskStatus {
	return DiskStatus{
		Full:         s.disk.full.Load(),
		FreeBytes:    s.disk.free.Load(),
		MinFreeBytes: s.disk.min,
		ResumeBytes:  s.disk.resume,
	}
}

// diskMonitor measures the free space of the filesystems the store (and
// what shares its disk) writes to, and keeps an atomic "full" flag that
// every write path growing the disk checks. It measures every interval, and
// sooner when the bytes Append wrote since the last measurement reach
// budget; measuring is a statfs(2) per directory, never done on the
// request path.
type diskMonitor struct {
	dirs     []string
	probe    func(dir string) (uint64, error)
	min      uint64
	resume   uint64 // free space at which a full store accepts writes again
	interval time.Duration
	log      *slog.Logger

	full    atomic.Bool
	free    atomic.Uint64
	written atomic.Int64 // bytes written since the last measurement (estimate)
	budget  atomic.Int64 // written at which a measurement is due now
	kick    chan struct{}

	failing bool // the last measurement failed (owned by Open, then run)
}

func newDiskMonitor(cfg *Config) *diskMonitor {
	m := &diskMonitor{
		probe:    cfg.FreeSpace,
		min:      uint64(cfg.MinFreeBytes),
		resume:   uint64(cfg.MinFreeBytes + cfg.MinFreeBytes/8),
		interval: cfg.DiskCheckInterval,
		log:      cfg.Logger,
		kick:     make(chan struct{}, 1),
	}
	if !cfg.InMemory {
		m.dirs = append(m.dirs, cfg.Dir)
	}
	m.dirs = append(m.dirs, cfg.WatchDirs...)
	m.budget.Store(minDiskCheckBytes)
	return m
}

// enabled reports whether there is anything to watch.
func (m *diskMonitor) enabled() bool { return len(m.dirs) > 0 }

// room returns ErrDiskFull while the disk is full.
func (m *diskMonitor) room() error {
	if m.full.Load() {
		return ErrDiskFull
	}
	return nil
}

// wrote accounts n bytes written and asks for a measurement when the
// budget is spent. It never blocks.
func (m *diskMonitor) wrote(n int64) {
	if m.written.Add(n) < m.budget.Load() {
		return
	}
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// run measures until stop is closed.
func (m *diskMonitor) run(stop <-chan struct{}) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-m.kick:
		}
		m.check()
	}
}

// check measures the free space and updates the state, logging each change
// of state once. A failed measurement keeps the previous state.
func (m *diskMonitor) check() {
	free, dir, err := m.measure()
	if err != nil {
		if !m.failing {
			m.failing = true
			m.log.Warn("storage: free space cannot be measured; the disk-full guard keeps its last state", "err", err)
		}
		return
	}
	if m.failing {
		m.failing = false
		m.log.Info("storage: free space can be measured again", "free_bytes", free)
	}
	switch was, full := m.update(free); {
	case full && !was:
		m.log.Warn("storage: disk almost full; refusing writes until space is freed",
			"dir", dir, "free_bytes", free, "min_free_bytes", m.min, "resume_at_bytes", m.resume)
	case was && !full:
		m.log.Info("storage: disk space available again; accepting writes", "free_bytes", free)
	}
}

// update applies a measurement and returns the state before and after.
func (m *diskMonitor) update(free uint64) (was, full bool) {
	m.written.Store(0)
	m.free.Store(free)
	was, full = m.full.Load(), m.full.Load()
	switch {
	case !was && free < m.min:
		full = true
	case was && free >= m.resume:
		full = false
	}
	m.full.Store(full)
	headroom := int64(free) - int64(m.min)
	m.budget.Store(min(max(headroom/4, minDiskCheckBytes), maxDiskCheckBytes))
	return was, full
}

// measure returns the smallest free space of the watched directories and
// the directory it was measured for.
func (m *diskMonitor) measure() (free uint64, dir string, err error) {
	for i, d := range m.dirs {
		f, err := m.probe(d)
		if err != nil {
			return 0, "", fmt.Errorf("storage: free space of %s: %w", d, err)
		}
		if i == 0 || f < free {
			free, dir = f, d
		}
	}
	return free, dir, nil
}

// errFreeSpaceUnsupported is statfsFree's error where statfs(2) is not
// available.
var errFreeSpaceUnsupported = errors.New("not supported on this system")

// StatfsFree is the default Config.FreeSpace: the bytes available to
// unprivileged users (statfs f_bavail × f_bsize) on the filesystem holding
// dir, or holding its nearest existing parent when dir does not exist yet.
func StatfsFree(dir string) (uint64, error) {
	d := filepath.Clean(dir)
	for {
		free, err := statfsFree(d)
		if !errors.Is(err, fs.ErrNotExist) {
			return free, err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return free, err
		}
		d = parent
	}
}

// mib formats n bytes for error messages.
func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// first is Open's measurement: it returns an error wrapping ErrDiskFull
// when the disk is already short of space, before Badger maps anything.
// A disk that cannot be measured is not a reason to refuse: that is logged.
func (m *diskMonitor) first() error {
	free, dir, err := m.measure()
	if err != nil {
		m.failing = true
		m.log.Warn("storage: free space cannot be measured; the disk-full guard is off", "err", err)
		return nil
	}
	if _, full := m.update(free); full {
		return fmt.Errorf("%w: %s free on the filesystem of %s, at least %s (MinFreeBytes) needed to start",
			ErrDiskFull, mib(free), dir, mib(m.min))
	}
	return nil
}
