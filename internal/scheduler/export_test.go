package scheduler

// DueAt is dueAt, for the tests.
var DueAt = dueAt
