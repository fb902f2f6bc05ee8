// echo_server: a Go echo server, the Go baseline of the echo section of
// tools/bench/net_bench.sh.
//
// The benchmark issue welcomes a Go echo server next to the raw epoll and
// Boost.Asio baselines: goroutines parked on Go's netpoller are the
// best-known runtime of the same shape as weft's fibers on its poller. This
// is the plain Go way to write one: a goroutine per connection that reads
// into a 16 KiB buffer (the size weft's echo_server and asio_echo_server
// read into) and writes back what it read, until EOF or an error. Go sets
// TCP_NODELAY on every TCP connection by default.
//
// Standard library only, built without modules and by file name, as
// select_bench.go (another package main in this directory) is. net_bench.sh
// builds it itself; by hand:
//
//	cd tools/bench/go
//	GO111MODULE=off GOCACHE=/tmp/gocache go build -o /tmp/go_echo_server echo_server.go
//	/tmp/go_echo_server --host 127.0.0.1 --port 0 --threads 1
//
// --threads N sets GOMAXPROCS (the number of threads running goroutines at
// once; default 1), the counterpart of asio's --threads and weft's
// --workers. --port 0 picks a free port. Once it listens it prints exactly
// `listening on HOST:PORT` with the real port; on SIGINT or SIGTERM it
// closes the listener and exits with status 0, leaving open connections to
// the kernel.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// serve echoes one connection until the peer closes it or an error occurs.
func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16*1024)
	for {
		n, err := c.Read(buf)
		// A read can return data and an error together; echo the data first.
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on (0: a free port)")
	threads := flag.Int("threads", 1, "GOMAXPROCS: threads running goroutines at once")
	flag.Parse()
	if flag.NArg() != 0 || *port < 0 || *port > 65535 || *threads < 1 || *threads > 1024 {
		fmt.Fprintln(os.Stderr, "usage: echo_server [--host 127.0.0.1] [--port 0] [--threads 1]")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*threads)

	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo_server:", err)
		os.Exit(1)
	}
	// os.Stdout is not buffered in Go: the line is written out here, and
	// net_bench.sh reads the port from it.
	fmt.Printf("listening on %s\n", ln.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		ln.Close() // ends the accept loop below
	}()

	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				os.Exit(0)
			}
			// Out of descriptors and the like: say so, wait a little, go on
			// serving the connections already accepted.
			fmt.Fprintln(os.Stderr, "echo_server: accept:", err)
			time.Sleep(5 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}
