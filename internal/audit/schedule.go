package audit

import (
	"fmt"
	"time"
)

type schedule struct {
	every     string
	hour, min int
	zone      *time.Location
	name      string
	period    time.Duration
}

func (s Schedule) parse() (schedule, error) {
	out := schedule{every: s.Every, name: s.Name, hour: 6}
	if out.name == "" {
		out.name = s.Every
	}
	switch s.Every {
	case "daily":
		out.period = 24 * time.Hour
	case "weekly":
		out.period = 7 * 24 * time.Hour
	case "monthly":
		out.period = 30 * 24 * time.Hour
	default:
		return out, fmt.Errorf("audit: report schedule %q: every must be daily, weekly or monthly", s.Name)
	}
	if s.At != "" {
		t, err := time.Parse("15:04", s.At)
		if err != nil {
			return out, fmt.Errorf("audit: report schedule %q: at %q: want HH:MM", s.Name, s.At)
		}
		out.hour, out.min = t.Hour(), t.Minute()
	}
	out.zone = time.UTC
	if s.TimeZone != "" {
		z, err := time.LoadLocation(s.TimeZone)
		if err != nil {
			return out, fmt.Errorf("audit: report schedule %q: time zone %q: %w", s.Name, s.TimeZone, err)
		}
		out.zone = z
	}
	return out, nil
}

// next returns the first run time strictly after t: the day's HH:MM in the
// zone; weekly on Mondays, monthly on the first of the month.
func (s schedule) next(t time.Time) time.Time {
	l := t.In(s.zone)
	c := time.Date(l.Year(), l.Month(), l.Day(), s.hour, s.min, 0, 0, s.zone)
	switch s.every {
	case "weekly":
		for c.Weekday() != time.Monday || !c.After(t) {
			c = time.Date(c.Year(), c.Month(), c.Day()+1, s.hour, s.min, 0, 0, s.zone)
		}
	case "monthly":
		c = time.Date(l.Year(), l.Month(), 1, s.hour, s.min, 0, 0, s.zone)
		if !c.After(t) {
			c = time.Date(l.Year(), l.Month()+1, 1, s.hour, s.min, 0, 0, s.zone)
		}
	default:
		if !c.After(t) {
			c = time.Date(c.Year(), c.Month(), c.Day()+1, s.hour, s.min, 0, 0, s.zone)
		}
	}
	return c
}
