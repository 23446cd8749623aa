package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Scheduler is the audit's component of the server: its Run evaluates the
// rules (and handles overdue review items) every Config.Interval, verifies the
// log every Config.LogVerifyInterval (and once at start), and produces the
// scheduled reports, until ctx ends. Decisions read the engine's clock; the
// tickers only wake it.
type Scheduler struct {
	Engine *Engine
	Log    *LogVerifier // nil: the log is not verified
	// ReportPoll is how often report schedules are compared with the clock (default 1m).
	ReportPoll time.Duration
	Logger     *slog.Logger
}

// Run runs until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	c := s.Engine.Config()
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	if s.Log != nil && c.LogVerifyInterval > 0 {
		wg.Go(func() {
			s.Log.Run(ctx, tickNow(ctx, c.LogVerifyInterval), func(err error) {
				log.Error("audit: self-verification FAILED: the stored log does not match its signed checkpoint, or could not be read", "err", err)
			})
		})
	}
	if c.Interval > 0 {
		wg.Go(func() {
			t := time.NewTicker(c.Interval)
			defer t.Stop()
			s.Engine.RunEvery(ctx, t.C)
		})
	}
	if len(c.Reports) > 0 {
		wg.Go(func() {
			poll := s.ReportPoll
			if poll <= 0 {
				poll = time.Minute
			}
			t := time.NewTicker(poll)
			defer t.Stop()
			if err := s.Engine.RunReports(ctx, t.C); err != nil {
				log.Error("audit: scheduled reports stopped", "err", err)
			}
		})
	}
	wg.Wait()
	return nil
}

// tickNow ticks at once and then every d, until ctx ends.
func tickNow(ctx context.Context, d time.Duration) <-chan time.Time {
	ch := make(chan time.Time)
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case ch <- time.Now():
			case <-ctx.Done():
				return
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}
