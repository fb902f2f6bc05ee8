// spawn_bench: Go's side of weft's spawn benchmark. One goroutine starts
// -tasks goroutines that each add 1 to an atomic and call wg.Done, then
// waits for all. Prints ns per task for each of -reps runs and the
// process's peak RSS (each rep in a fresh process gives a per-run peak:
// run with -reps=1).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	tasks := flag.Int("tasks", 1000000, "goroutines per run")
	reps := flag.Int("reps", 1, "runs")
	flag.Parse()
	for r := 0; r < *reps; r++ {
		var sum int64
		var wg sync.WaitGroup
		done := make(chan time.Duration)
		go func() {
			wg.Add(*tasks)
			t0 := time.Now()
			for i := 0; i < *tasks; i++ {
				go func() {
					atomic.AddInt64(&sum, 1)
					wg.Done()
				}()
			}
			wg.Wait()
			done <- time.Since(t0)
		}()
		d := <-done
		if atomic.LoadInt64(&sum) != int64(*tasks) {
			fmt.Fprintf(os.Stderr, "go spawn: expected %d, got %d\n", *tasks, sum)
			os.Exit(1)
		}
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		fmt.Printf("go spawn %.1f ns/task peak_rss_kib %d gomaxprocs %d\n",
			float64(d.Nanoseconds())/float64(*tasks), ru.Maxrss, runtime.GOMAXPROCS(0))
	}
}
