package registry

import "os"

// BreakJournal swaps the journal for a read-only handle on the same file, so appends (and
// cutting them off again) fail as they would on a failed disk.
func BreakJournal(e *Embedded) error {
	return swapJournal(e, os.O_RDONLY)
}

// RepairJournal gives the journal a writable handle again.
func RepairJournal(e *Embedded) error {
	return swapJournal(e, os.O_WRONLY|os.O_APPEND)
}

func swapJournal(e *Embedded, flag int) error {
	f, err := os.OpenFile(e.journalPath(), flag, 0)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.journal
	e.journal = f
	return old.Close()
}
