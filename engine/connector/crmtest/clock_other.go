//go:build !linux

package crmtest

import "time"

// clock is Linux only (a timerfd); elsewhere the server uses Go timers.
type clock struct{}

func newClock() *clock { return nil }

func (c *clock) after(time.Time) <-chan struct{} { panic("crmtest: no clock on this system") }

func (c *clock) close() {}
