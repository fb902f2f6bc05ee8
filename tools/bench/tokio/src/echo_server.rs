// tokio_echo_server: the tokio baseline of the echo section of
// tools/bench/net_bench.sh, the counterpart of tools/bench/go/echo_server.go.
//
// The plain tokio way to write one: a task per connection that reads into a
// 16 KiB buffer (the size weft's echo_server, asio_echo_server and the Go
// server read into) and writes back what it read, until EOF or an error,
// on the multi-thread runtime. TCP_NODELAY is set on every connection, as
// Go does by default.
//
//   tokio_echo_server [--host 127.0.0.1] [--port 0] [--threads 1]
//
// --threads N is the runtime's worker threads (asio's --threads, weft's
// --workers). --port 0 picks a free port. Once it listens it prints exactly
// `listening on HOST:PORT` with the real port; on SIGINT or SIGTERM it exits
// with status 0, leaving open connections to the kernel.
use std::io::Write;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

fn usage() -> ! {
    eprintln!("usage: tokio_echo_server [--host 127.0.0.1] [--port 0] [--threads 1]");
    std::process::exit(2);
}

async fn serve(mut c: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match c.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if c.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut host, mut port, mut threads) = ("127.0.0.1".to_string(), 0u16, 1usize);
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_else(|| usage());
        match args[i].as_str() {
            "--host" => host = value,
            "--port" => port = value.parse().unwrap_or_else(|_| usage()),
            "--threads" => threads = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
        i += 2;
    }
    if threads < 1 || threads > 1024 {
        usage();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let ln = match TcpListener::bind((host.as_str(), port)).await {
            Ok(ln) => ln,
            Err(e) => {
                eprintln!("tokio_echo_server: {}", e);
                std::process::exit(1);
            }
        };
        println!("listening on {}", ln.local_addr().expect("local_addr"));
        std::io::stdout().flush().expect("stdout");
        for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
            let mut s = signal(kind).expect("signal handler");
            tokio::spawn(async move {
                s.recv().await;
                std::process::exit(0);
            });
        }
        loop {
            match ln.accept().await {
                Ok((c, _)) => {
                    let _ = c.set_nodelay(true);
                    tokio::spawn(serve(c));
                }
                Err(e) => {
                    // Out of descriptors and the like: say so, wait a
                    // little, go on serving the connections accepted.
                    eprintln!("tokio_echo_server: accept: {}", e);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
    });
}
