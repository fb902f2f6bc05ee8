// select_bench: the Go counterpart of tools/bench/select_benchmark.cc.
//
// One goroutine sends N values alternately on channel A and channel B; the
// other loops select { case v := <-a: ... case v := <-b: ... } N times.
// Baseline: the same traffic over one channel received with <-ch. Channels
// have capacity 1, as in the weft benchmark. The two sections alternate
// -reps times and the medians are printed, in ns per value received, in
// the form tools/bench/select_vs_go.sh reads. Run with GOMAXPROCS=2.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"
)

func single(n int64) float64 {
	ch := make(chan int64, 1)
	done := make(chan int64)
	t0 := time.Now()
	go func() {
		for i := int64(0); i < n; i++ {
			ch <- i
		}
	}()
	go func() {
		var sum int64
		for i := int64(0); i < n; i++ {
			sum += <-ch
		}
		done <- sum
	}()
	check(<-done, n)
	return float64(time.Since(t0).Nanoseconds()) / float64(n)
}

func selected(n int64) float64 {
	a := make(chan int64, 1)
	b := make(chan int64, 1)
	done := make(chan int64)
	t0 := time.Now()
	go func() {
		for i := int64(0); i < n; i++ {
			if i%2 == 0 {
				a <- i
			} else {
				b <- i
			}
		}
	}()
	go func() {
		var sum int64
		for i := int64(0); i < n; i++ {
			select {
			case v := <-a:
				sum += v
			case v := <-b:
				sum += v
			}
		}
		done <- sum
	}()
	check(<-done, n)
	return float64(time.Since(t0).Nanoseconds()) / float64(n)
}

func check(sum, n int64) {
	if sum != n*(n-1)/2 {
		fmt.Fprintf(os.Stderr, "select_bench: wrong sum %d\n", sum)
		os.Exit(1)
	}
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

func main() {
	n := flag.Int64("values", 1000000, "values per run")
	reps := flag.Int("reps", 5, "alternating runs of each section")
	flag.Parse()
	var base, sel []float64
	for r := 0; r < *reps; r++ {
		base = append(base, single(*n))
		sel = append(sel, selected(*n))
	}
	fmt.Printf("go GOMAXPROCS=%d recv %.1f select %.1f\n", runtime.GOMAXPROCS(0), median(base), median(sel))
}
