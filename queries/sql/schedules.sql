-- name: ScheduleTickGet :one
SELECT last_tick FROM ferry.schedule_ticks WHERE kind = @kind AND name = @name;

-- name: ScheduleTickAdvance :exec
-- Ticks only move forward, whichever replica records one first.
INSERT INTO ferry.schedule_ticks (kind, name, last_tick) VALUES (@kind, @name, @tick)
ON CONFLICT (kind, name) DO UPDATE SET last_tick = greatest(ferry.schedule_ticks.last_tick, excluded.last_tick);

-- name: ScheduleTickList :many
SELECT * FROM ferry.schedule_ticks ORDER BY kind, name;
