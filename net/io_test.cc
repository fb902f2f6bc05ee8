// Stream adapters: BufferedReader, BufferedWriter, copy(), DuplexPipe,
// TransformWriter/TransformReader; every call and error status, a
// pipe -> transforms -> buffered TCP pipeline, and exact-count concurrency
// through pipes on four workers.
#include "net/io.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/strings/cord.h"
#include "net/net.h"
#include "runtime/runtime.h"
#include "sync/sync.h"
#include "tests/test_util.h"

namespace weft::net {
namespace {

using absl::StatusCode;

// The concepts: what satisfies them and what does not.
static_assert(Readable<TcpStream> && Writable<TcpStream>);
static_assert(Readable<PipeEnd> && Writable<PipeEnd>);
static_assert(Readable<BufferedReader<TcpStream>> && !Writable<BufferedReader<TcpStream>>);
static_assert(Writable<BufferedWriter<TcpStream>> && !Readable<BufferedWriter<TcpStream>>);

std::string msg(const absl::Status& s) { return std::string(s.message()); }
bool starts_with(const absl::Status& s, std::string_view prefix) {
  return msg(s).rfind(prefix, 0) == 0;
}

// ScriptedReader: a Readable that returns its script in order: chunks of
// bytes (split when the caller's buffer is smaller) and statuses; then end
// of stream. Records the buffer size of every call.
class ScriptedReader {
 public:
  using Step = std::variant<std::string, absl::Status>;
  explicit ScriptedReader(std::vector<Step> steps) : steps_(steps.begin(), steps.end()) {}
  absl::StatusOr<size_t> read(std::span<char> buf) {
    calls.push_back(buf.size());
    if (steps_.empty()) return 0;
    if (auto* st = std::get_if<absl::Status>(&steps_.front())) {
      absl::Status s = *st;
      steps_.pop_front();
      return s;
    }
    std::string& chunk = std::get<std::string>(steps_.front());
    size_t n = std::min(buf.size(), chunk.size());
    std::memcpy(buf.data(), chunk.data(), n);
    chunk.erase(0, n);
    if (chunk.empty()) steps_.pop_front();
    return n;
  }
  std::vector<size_t> calls;

 private:
  std::deque<Step> steps_;
};

// RecordingWriter: a Writable that appends to `data` and records the size
// of every call; call number `fail_at` (0-based) and every later one fail
// with `failure`.
struct RecordingWriter {
  absl::Status write_all(std::span<const char> d) {
    ++calls;
    if (fail_at >= 0 && calls > fail_at) return failure;
    data.append(d.data(), d.size());
    writes.push_back(d.size());
    return absl::OkStatus();
  }
  std::string data;
  std::vector<size_t> writes;
  int calls = 0;
  int fail_at = -1;
  absl::Status failure = absl::UnavailableError("sink down");
};

static_assert(Readable<ScriptedReader> && !Writable<ScriptedReader>);
static_assert(Writable<RecordingWriter> && !Readable<RecordingWriter>);

absl::Status with_payload(absl::Status s) {
  s.SetPayload("weft.test/marker", absl::Cord("kept"));
  return s;
}
bool has_payload(const absl::Status& s) {
  auto p = s.GetPayload("weft.test/marker");
  return p.has_value() && std::string(*p) == "kept";
}

std::string upper(std::string_view c) {
  std::string s(c);
  for (char& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

// ---------------------------------------------------------------------------
// BufferedReader

TEST_CASE("BufferedReader::read serves the buffer first and bypasses it for large reads") {
  ScriptedReader src({std::string("hello world")});
  BufferedReader in(src, 8);
  CHECK(in.capacity() == 8);
  CHECK(&in.get() == &src);
  char buf[16];
  auto n = in.read({buf, 3});
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "hel");
  CHECK(src.calls == std::vector<size_t>{8});  // one fill of the whole buffer
  CHECK(in.buffered() == 5);
  n = in.read({buf, 10});  // what is buffered, without touching the stream
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "lo wo");
  CHECK(src.calls.size() == 1);
  CHECK(in.buffered() == 0);
  n = in.read({buf, 16});  // >= capacity and nothing buffered: straight through
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "rld");
  CHECK(src.calls == std::vector<size_t>{8, 16});
  CHECK(in.buffered() == 0);
  n = in.read({buf, 0});
  CHECK(n.ok());
  CHECK(*n == 0);
  CHECK(src.calls.size() == 2);  // an empty read does not touch the stream
  n = in.read({buf, 4});         // end of stream
  REQUIRE(n.ok());
  CHECK(*n == 0);
  n = in.read({buf, 16});
  REQUIRE(n.ok());
  CHECK(*n == 0);
}

TEST_CASE("BufferedReader::read passes stream errors through with their code and payload") {
  ScriptedReader src({std::string("ab"), with_payload(absl::UnavailableError("reset")),
                      std::string("cd")});
  BufferedReader in(src, 4);
  char buf[4];
  auto n = in.read(buf);
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "ab");
  n = in.read(buf);  // direct read (4 >= capacity)
  CHECK(n.status().code() == StatusCode::kUnavailable);
  CHECK(msg(n.status()) == "BufferedReader::read: reset");
  CHECK(has_payload(n.status()));
  n = in.read({buf, 1});  // through the buffer: the stream recovered
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "c");
  CHECK(in.buffered() == 1);
}

TEST_CASE("BufferedReader::read_exact: across chunks, short at end of stream, errors") {
  ScriptedReader src({std::string("ab"), std::string("cde"), std::string("f"),
                      with_payload(absl::DataLossError("bad disk")), std::string("gh")});
  BufferedReader in(src, 2);
  char buf[5];
  CHECK(in.read_exact(buf).ok());
  CHECK(std::string(buf, 5) == "abcde");
  char two[2];
  absl::Status s = in.read_exact(two);  // "f", then the error
  CHECK(s.code() == StatusCode::kDataLoss);
  CHECK(msg(s) == "BufferedReader::read_exact: bad disk");
  CHECK(has_payload(s));
  CHECK(two[0] == 'f');  // what was read stays in the buffer
  char three[3] = {0, 0, 0};
  s = in.read_exact(three);  // "gh", then end of stream
  CHECK(s.code() == StatusCode::kOutOfRange);
  CHECK(msg(s) == "BufferedReader::read_exact: end of stream after 2 of 3 bytes");
  CHECK(std::string(three, 2) == "gh");
  s = in.read_exact(three);
  CHECK(s.code() == StatusCode::kOutOfRange);
  CHECK(msg(s) == "BufferedReader::read_exact: end of stream after 0 of 3 bytes");
  CHECK(in.read_exact({three, 0}).ok());  // nothing to fill
}

TEST_CASE("BufferedReader::read_line: LF, CRLF, empty lines, a final line without newline") {
  ScriptedReader src({std::string("one\ntwo\r\n\n\r\nlone\rcr\n\r\r\nlast")});
  BufferedReader in(src, 5);  // smaller than most lines
  std::string line = "junk";
  std::vector<std::string> got;
  absl::Status s;
  while ((s = in.read_line(&line)).ok()) got.push_back(line);
  CHECK(s.code() == StatusCode::kOutOfRange);
  CHECK(msg(s) == "BufferedReader::read_line: end of stream");
  CHECK(line.empty());
  CHECK(got == std::vector<std::string>{"one", "two", "", "", "lone\rcr", "\r", "last"});
  CHECK(in.read_line(&line).code() == StatusCode::kOutOfRange);  // stays at end

  ScriptedReader cr({std::string("x\r")});  // "\r" without "\n" is data
  BufferedReader in2(cr);
  CHECK(in2.read_line(&line).ok());
  CHECK(line == "x\r");
  CHECK(in2.read_line(&line).code() == StatusCode::kOutOfRange);

  ScriptedReader none({});
  BufferedReader in3(none);
  CHECK(in3.read_line(&line).code() == StatusCode::kOutOfRange);
}

TEST_CASE("BufferedReader::read_until keeps the delimiter; lines longer than the buffer") {
  std::string big(10000, 'z');
  ScriptedReader src({std::string("k=v;x=y"), std::string(";") + big + ";tail"});
  BufferedReader in(src, 8);
  std::string out;
  CHECK(in.read_until(';', &out).ok());
  CHECK(out == "k=v;");
  CHECK(in.read_until(';', &out).ok());
  CHECK(out == "x=y;");  // split across two stream reads
  CHECK(in.read_until(';', &out).ok());
  CHECK(out == big + ";");  // many buffer fills
  CHECK(in.read_until(';', &out).ok());
  CHECK(out == "tail");  // final piece without delimiter
  absl::Status s = in.read_until(';', &out);
  CHECK(s.code() == StatusCode::kOutOfRange);
  CHECK(msg(s) == "BufferedReader::read_until: end of stream");
}

TEST_CASE("read_line/read_until over max: kResourceExhausted, the rest stays for the next call") {
  // max bounds the bytes before the delimiter.
  ScriptedReader src({std::string("abcde\nabcdef\n") + std::string(100, 'a') + "\nnext\nab\r\n"});
  BufferedReader in(src, 8);
  std::string line;
  CHECK(in.read_line(&line, 5).ok());
  CHECK(line == "abcde");  // exactly max
  absl::Status s = in.read_line(&line, 5);
  CHECK(s.code() == StatusCode::kResourceExhausted);
  CHECK(msg(s) == "BufferedReader::read_line: line exceeds 5 bytes");
  CHECK(line == "abcde");  // the first max bytes, consumed
  CHECK(in.read_line(&line, 5).ok());
  CHECK(line == "f");  // the rest of the line
  // 100 bytes with max 30: 30, 30, 30, then the last 10 and the newline.
  std::string whole;
  int exhausted = 0;
  while ((s = in.read_line(&line, 30)).code() == StatusCode::kResourceExhausted) {
    CHECK(line.size() == 30);
    whole += line;
    ++exhausted;
  }
  REQUIRE(s.ok());
  whole += line;
  CHECK(exhausted == 3);
  CHECK(whole == std::string(100, 'a'));
  CHECK(in.read_line(&line).ok());
  CHECK(line == "next");
  // The "\r" of a CRLF counts towards max.
  s = in.read_line(&line, 2);
  CHECK(s.code() == StatusCode::kResourceExhausted);
  CHECK(line == "ab");
  CHECK(in.read_line(&line, 2).ok());
  CHECK(line == "");  // "\r\n" is an empty line
  CHECK(in.read_line(&line).code() == StatusCode::kOutOfRange);

  ScriptedReader src2({std::string("xyz;")});
  BufferedReader in2(src2);
  s = in2.read_until(';', &line, 0);
  CHECK(s.code() == StatusCode::kResourceExhausted);
  CHECK(msg(s) == "BufferedReader::read_until: line exceeds 0 bytes");
  CHECK(line.empty());
  CHECK(in2.buffered() == 4);  // nothing consumed
  CHECK(in2.read_until(';', &line, 3).ok());
  CHECK(line == "xyz;");
}

TEST_CASE("read_line: a stream error mid-line keeps the partial line; nothing is lost") {
  ScriptedReader src({std::string("par"), with_payload(absl::UnavailableError("reset")),
                      std::string("tial\nnext\n"), absl::DeadlineExceededError("slow")});
  BufferedReader in(src, 4);
  std::string line;
  absl::Status s = in.read_line(&line);
  CHECK(s.code() == StatusCode::kUnavailable);
  CHECK(msg(s) == "BufferedReader::read_line: reset");
  CHECK(has_payload(s));
  CHECK(line == "par");
  std::string rest;
  CHECK(in.read_line(&rest).ok());
  CHECK(line + rest == "partial");
  CHECK(in.read_line(&line).ok());
  CHECK(line == "next");
  s = in.read_line(&line);
  CHECK(s.code() == StatusCode::kDeadlineExceeded);
  CHECK(msg(s) == "BufferedReader::read_line: slow");
  CHECK(line.empty());
  CHECK(in.read_line(&line).code() == StatusCode::kOutOfRange);
}

TEST_CASE("BufferedReader is movable") {
  ScriptedReader src({std::string("a\nb\n")});
  BufferedReader in(src, 16);
  std::string line;
  CHECK(in.read_line(&line).ok());
  BufferedReader moved(std::move(in));
  CHECK(moved.buffered() == 2);
  CHECK(moved.read_line(&line).ok());
  CHECK(line == "b");
  BufferedReader other(src, 4);
  other = std::move(moved);
  CHECK(other.capacity() == 16);
  CHECK(other.read_line(&line).code() == StatusCode::kOutOfRange);
}

// ---------------------------------------------------------------------------
// BufferedWriter

TEST_CASE("BufferedWriter buffers, flushes when full, writes large chunks through") {
  RecordingWriter sink;
  BufferedWriter out(sink, 8);
  CHECK(out.capacity() == 8);
  CHECK(&out.get() == &sink);
  CHECK(out.write_all("abc").ok());
  CHECK(out.buffered() == 3);
  CHECK(sink.calls == 0);
  CHECK(out.write_all(std::string("defgh")).ok());  // exactly full: still buffered
  CHECK(out.buffered() == 8);
  CHECK(sink.calls == 0);
  std::vector<char> i = {'i'};
  CHECK(out.write_all(i).ok());  // does not fit: flush the 8, buffer "i"
  CHECK(sink.writes == std::vector<size_t>{8});
  CHECK(out.buffered() == 1);
  std::string big(20, 'X');
  CHECK(out.write_all(std::span<const char>(big.data(), big.size())).ok());
  CHECK(sink.writes == std::vector<size_t>{8, 1, 20});  // "i" first, then through
  CHECK(out.buffered() == 0);
  CHECK(out.write_all("jk").ok());
  CHECK(out.write_all("").ok());
  CHECK(out.buffered() == 2);
  CHECK(out.flush().ok());
  CHECK(out.flush().ok());  // nothing buffered: no call
  CHECK(sink.writes == std::vector<size_t>{8, 1, 20, 2});
  CHECK(out.write_all("z").ok());
  CHECK(out.write_all("12345678").ok());  // exactly the capacity: flush "z", then buffer
  CHECK(sink.writes == std::vector<size_t>{8, 1, 20, 2, 1});
  CHECK(out.buffered() == 8);
  CHECK(out.flush().ok());
  CHECK(sink.writes == std::vector<size_t>{8, 1, 20, 2, 1, 8});
  CHECK(sink.data == "abcdefghi" + big + "jkz12345678");
  CHECK(out.status().ok());
}

TEST_CASE("BufferedWriter: errors are sticky and name the call; the destructor does not flush") {
  RecordingWriter sink;
  sink.fail_at = 1;  // the second write fails
  sink.failure = with_payload(absl::UnavailableError("sink down"));
  BufferedWriter out(sink, 4);
  CHECK(out.write_all("abcd").ok());
  CHECK(out.write_all("e").ok());  // flushed "abcd" (call 0)
  CHECK(sink.data == "abcd");
  absl::Status s = out.flush();  // call 1 fails
  CHECK(s.code() == StatusCode::kUnavailable);
  CHECK(msg(s) == "BufferedWriter::flush: sink down");
  CHECK(has_payload(s));
  CHECK(out.buffered() == 0);  // discarded
  CHECK(out.status().code() == StatusCode::kUnavailable);
  s = out.write_all("f");
  CHECK(s.code() == StatusCode::kUnavailable);
  CHECK(msg(s) == "BufferedWriter::flush: sink down");  // the same, sticky error
  CHECK(out.flush().code() == StatusCode::kUnavailable);
  CHECK(sink.calls == 2);  // the stream is not called again

  RecordingWriter sink2;
  sink2.fail_at = 0;
  BufferedWriter out2(sink2, 4);
  s = out2.write_all("too long for the buffer");  // written through: fails
  CHECK(s.code() == StatusCode::kUnavailable);
  CHECK(msg(s) == "BufferedWriter::write_all: sink down");
  sink2.fail_at = -1;
  CHECK(out2.write_all("x").code() == StatusCode::kUnavailable);
  CHECK(sink2.data.empty());

  RecordingWriter sink3;
  {
    BufferedWriter out3(sink3, 64);
    CHECK(out3.write_all("unflushed").ok());
    BufferedWriter moved(std::move(out3));
    CHECK(moved.buffered() == 9);
  }
  CHECK(sink3.calls == 0);  // documented: the user must flush
}

// ---------------------------------------------------------------------------
// copy()

TEST_CASE("copy: everything to end of stream, in chunks; errors say which side failed") {
  ScriptedReader src({std::string("abcdefghij"), std::string("kl")});
  RecordingWriter sink;
  auto n = copy(src, sink, 4);
  REQUIRE(n.ok());
  CHECK(*n == 12);
  CHECK(sink.data == "abcdefghijkl");
  CHECK(sink.writes == std::vector<size_t>{4, 4, 2, 2});
  CHECK(src.calls == std::vector<size_t>{4, 4, 4, 4, 4});  // the last returned 0

  ScriptedReader empty({});
  RecordingWriter sink0;
  n = copy(empty, sink0);
  REQUIRE(n.ok());
  CHECK(*n == 0);
  CHECK(sink0.calls == 0);

  ScriptedReader bad_src({std::string("xy"), with_payload(absl::UnavailableError("reset"))});
  RecordingWriter sink1;
  n = copy(bad_src, sink1);
  CHECK(n.status().code() == StatusCode::kUnavailable);
  CHECK(msg(n.status()) == "copy: read: reset");
  CHECK(has_payload(n.status()));
  CHECK(sink1.data == "xy");

  ScriptedReader src2({std::string("abc"), std::string("def")});
  RecordingWriter bad_sink;
  bad_sink.fail_at = 1;
  bad_sink.failure = with_payload(absl::FailedPreconditionError("broken pipe"));
  n = copy(src2, bad_sink);
  CHECK(n.status().code() == StatusCode::kFailedPrecondition);
  CHECK(msg(n.status()) == "copy: write: broken pipe");
  CHECK(has_payload(n.status()));
  CHECK(bad_sink.data == "abc");
}

TEST_CASE("copy through a BufferedReader into a BufferedWriter") {
  std::string text;
  for (int i = 0; i < 5000; ++i) text += std::to_string(i) + ",";
  std::vector<ScriptedReader::Step> steps;
  for (size_t i = 0; i < text.size(); i += 333) steps.emplace_back(text.substr(i, 333));
  ScriptedReader src(steps);
  BufferedReader in(src, 1000);
  RecordingWriter sink;
  BufferedWriter out(sink, 700);
  auto n = copy(in, out, 256);
  REQUIRE(n.ok());
  CHECK(*n == text.size());
  CHECK(out.flush().ok());
  CHECK(sink.data == text);
  for (size_t w : sink.writes) CHECK(w <= 700);
}

// ---------------------------------------------------------------------------
// Transform stages

TEST_CASE("TransformWriter: plain and StatusOr functions, composition order, flush") {
  RecordingWriter sink;
  BufferedWriter buffered(sink, 16);
  auto up = transform(buffered, upper);
  int calls = 0;
  // Applied first: doubles every 'a'; fails on '!'.
  auto dbl = transform(up, [&calls](std::string_view c) -> absl::StatusOr<std::string> {
    ++calls;
    if (c.find('!') != std::string_view::npos) {
      return with_payload(absl::InvalidArgumentError("bad chunk"));
    }
    std::string s;
    for (char ch : c) {
      s += ch;
      if (ch == 'a') s += 'a';
    }
    return s;
  });
  static_assert(Writable<decltype(up)> && Writable<decltype(dbl)>);
  CHECK(&dbl.get() == &up);
  CHECK(dbl.write_all("banana").ok());  // "baanaanaa" -> "BAANAANAA"
  CHECK(dbl.write_all(std::vector<char>{'a', 'b'}).ok());
  CHECK(sink.data.empty());  // still in the BufferedWriter
  CHECK(dbl.flush().ok());   // flushes through both stages
  CHECK(sink.data == "BAANAANAAAAB");
  CHECK(dbl.write_all("").ok());
  absl::Status s = dbl.write_all("hey!");
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(msg(s) == "TransformWriter::write_all: transform: bad chunk");
  CHECK(has_payload(s));
  CHECK(calls == 4);
  s = dbl.write_all("fine");  // stopped: fn is not called again
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(calls == 4);
  CHECK(dbl.flush().code() == StatusCode::kInvalidArgument);
  CHECK(dbl.status().code() == StatusCode::kInvalidArgument);
  CHECK(up.status().ok());
  CHECK(up.write_all("ok").ok());  // the downstream stages are unharmed
  CHECK(buffered.flush().ok());
  CHECK(sink.data == "BAANAANAAAABOK");
}

TEST_CASE("TransformWriter: an empty result writes nothing; stream errors are sticky") {
  RecordingWriter sink;
  sink.fail_at = 1;
  sink.failure = absl::UnavailableError("gone");
  int calls = 0;
  auto drop_x = transform(sink, [&calls](std::string_view c) {
    ++calls;
    return c == "x" ? std::string() : std::string(c);
  });
  CHECK(drop_x.write_all("x").ok());
  CHECK(sink.calls == 0);
  CHECK(drop_x.write_all("y").ok());
  CHECK(sink.data == "y");
  absl::Status s = drop_x.write_all("z");
  CHECK(s.code() == StatusCode::kUnavailable);
  CHECK(msg(s) == "TransformWriter::write_all: gone");
  CHECK(drop_x.write_all("w").code() == StatusCode::kUnavailable);
  CHECK(calls == 3);
  CHECK(drop_x.flush().code() == StatusCode::kUnavailable);  // RecordingWriter has no flush

  RecordingWriter sink2;
  BufferedWriter failing(sink2, 4);
  sink2.fail_at = 0;
  auto t = transform(failing, upper);
  CHECK(t.write_all("abc").ok());  // buffered
  s = t.flush();
  CHECK(s.code() == StatusCode::kUnavailable);
  CHECK(msg(s) == "TransformWriter::flush: BufferedWriter::flush: sink down");
}

TEST_CASE("TransformReader: transforms chunks, skips empty results, sticky errors") {
  ScriptedReader src({std::string("abc"), std::string("skip"), std::string("de"),
                      std::string("fail"), std::string("gh")});
  int calls = 0;
  auto t = transform_reader(
      src,
      [&calls](std::string_view c) -> absl::StatusOr<std::string> {
        ++calls;
        if (c == "skip") return std::string();
        if (c == "fail") return absl::DataLossError("corrupt");
        return upper(c) + "|";
      },
      16);
  static_assert(Readable<decltype(t)>);
  CHECK(&t.get() == &src);
  char buf[2];
  std::string got;
  absl::StatusOr<size_t> n;
  for (;;) {
    n = t.read(buf);
    if (!n.ok() || *n == 0) break;
    got.append(buf, *n);
  }
  CHECK(got == "ABC|DE|");
  CHECK(n.status().code() == StatusCode::kDataLoss);
  CHECK(msg(n.status()) == "TransformReader::read: transform: corrupt");
  CHECK(t.read(buf).status().code() == StatusCode::kDataLoss);  // sticky
  CHECK(calls == 4);
  CHECK(t.status().code() == StatusCode::kDataLoss);
  CHECK(src.calls == std::vector<size_t>{16, 16, 16, 16});

  ScriptedReader src2({std::string("xy"), absl::UnavailableError("reset")});
  auto t2 = transform_reader(src2, upper);
  char big[8];
  n = t2.read({big, 1});
  REQUIRE(n.ok());
  CHECK(t2.pending() == 1);
  n = t2.read(big);
  REQUIRE(n.ok());
  CHECK(std::string(big, *n) == "Y");
  n = t2.read(big);
  CHECK(n.status().code() == StatusCode::kUnavailable);
  CHECK(msg(n.status()) == "TransformReader::read: reset");
  CHECK(t2.read({big, 0}).status().code() == StatusCode::kUnavailable);

  ScriptedReader src3({std::string("end")});
  auto t3 = transform_reader(src3, upper);
  CHECK(*t3.read(big) == 3);
  CHECK(*t3.read(big) == 0);  // end of stream
  CHECK(*t3.read({big, 0}) == 0);
}

// ---------------------------------------------------------------------------
// DuplexPipe

TEST_CASE("DuplexPipe: both directions, shutdown_write, readable(), write() partial") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [a, b] = DuplexPipe::create(16);
    CHECK(a.is_open());
    CHECK(b.is_open());
    CHECK(a.capacity() == 16);
    CHECK(a.write_all("ping").ok());
    CHECK(b.readable() == 4);
    CHECK(a.readable() == 0);
    char buf[32];
    auto n = b.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "ping");
    CHECK(b.write_all(std::vector<char>{'p', 'o', 'n', 'g'}).ok());
    n = a.read({buf, 2});
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "po");
    n = a.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "ng");
    // write() takes what fits: 10, then 6 of 10 (wrapping the ring).
    n = a.write("0123456789");
    REQUIRE(n.ok());
    CHECK(*n == 10);
    n = a.write(std::string_view("abcdefghij"));
    REQUIRE(n.ok());
    CHECK(*n == 6);
    CHECK(b.readable() == 16);
    CHECK(*a.write("") == 0);
    n = b.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "0123456789abcdef");
    CHECK(*b.read({buf, 0}) == 0);
    // Half-close.
    CHECK(a.write_all("bye").ok());
    CHECK(a.shutdown_write().ok());
    CHECK(a.shutdown_write().ok());  // idempotent
    absl::Status s = a.write_all("more");
    CHECK(s.code() == StatusCode::kFailedPrecondition);
    CHECK(msg(s) == "PipeEnd::write_all: write after shutdown_write()");
    CHECK(a.write("x").status().code() == StatusCode::kFailedPrecondition);
    n = b.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "bye");
    n = b.read(buf);
    REQUIRE(n.ok());
    CHECK(*n == 0);  // end of stream
    CHECK(*b.read(buf) == 0);
    CHECK(b.write_all("still").ok());  // the other direction is open
    n = a.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "still");
    CHECK(a.is_open());
  });
}

TEST_CASE("DuplexPipe: close() gives the peer EOF after the drain and a broken pipe") {
  auto [a, b] = DuplexPipe::create(64);  // no runtime: plain thread, nothing waits
  CHECK(a.write_all("last words").ok());
  CHECK(b.write_all("lost").ok());  // toward a: discarded by a.close()
  a.close();
  a.close();  // idempotent
  CHECK(!a.is_open());
  CHECK(b.is_open());
  char buf[32];
  auto n = b.read(buf);
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "last words");
  CHECK(*b.read(buf) == 0);
  absl::Status s = b.write_all("hello?");
  CHECK(s.code() == StatusCode::kFailedPrecondition);
  CHECK(msg(s) == "PipeEnd::write_all: broken pipe (the peer end is closed)");
  CHECK(msg(b.write("x").status()) == "PipeEnd::write: broken pipe (the peer end is closed)");
  CHECK(b.write_all("").code() == StatusCode::kFailedPrecondition);
  n = a.read(buf);
  CHECK(n.status().code() == StatusCode::kFailedPrecondition);
  CHECK(msg(n.status()) == "PipeEnd::read: pipe end is closed");
  CHECK(a.readable() == 0);
  s = a.write_all("x");
  CHECK(s.code() == StatusCode::kFailedPrecondition);
  CHECK(msg(s) == "PipeEnd::write_all: pipe end is closed");
  s = a.shutdown_write();
  CHECK(s.code() == StatusCode::kFailedPrecondition);
  CHECK(msg(s) == "PipeEnd::shutdown_write: pipe end is closed");
  CHECK(b.shutdown_write().ok());
}

TEST_CASE("PipeEnd: unconnected and moved-from ends; move assignment closes the old end") {
  PipeEnd none;
  char buf[4];
  CHECK(!none.is_open());
  CHECK(none.capacity() == 0);
  CHECK(none.readable() == 0);
  CHECK(msg(none.read(buf).status()) == "PipeEnd::read: pipe end is not connected");
  CHECK(none.write("x").status().code() == StatusCode::kFailedPrecondition);
  CHECK(msg(none.write_all("x")) == "PipeEnd::write_all: pipe end is not connected");
  CHECK(none.shutdown_write().code() == StatusCode::kFailedPrecondition);
  none.close();
  none.set_read_timeout(absl::Milliseconds(1));

  auto [a, b] = DuplexPipe::create(8);
  PipeEnd a2(std::move(a));
  CHECK(!a.is_open());  // NOLINT(bugprone-use-after-move): moved-from is unconnected
  CHECK(a.read(buf).status().code() == StatusCode::kFailedPrecondition);
  CHECK(a2.write_all("hi").ok());
  auto [c, d] = DuplexPipe::create(8);
  a2 = std::move(c);  // closes the a-end: b reads "hi", then EOF
  auto n = b.read(buf);
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "hi");
  CHECK(*b.read(buf) == 0);
  CHECK(a2.write_all("to d").ok());
  n = d.read(buf);
  REQUIRE(n.ok());
  CHECK(std::string(buf, *n) == "to d");
}

TEST_CASE("DuplexPipe: backpressure parks the writer until the reader makes room") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto [a, b] = DuplexPipe::create(16);
    std::string data(100, '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i);
    auto writer = spawn([&a = a, &data] { return a.write_all(data).code(); });
    (void)this_fiber::sleep_for(absl::Milliseconds(10));
    CHECK(!writer.is_finished());
    CHECK(b.readable() == 16);  // full, the writer parked
    std::string got;
    char buf[7];
    while (got.size() < data.size()) {
      auto n = b.read(buf);
      REQUIRE(n.ok());
      REQUIRE(*n > 0);
      got.append(buf, *n);
    }
    CHECK(writer.join() == StatusCode::kOk);
    CHECK(got == data);
  });
}

TEST_CASE("DuplexPipe: close wakes fibers parked on either end") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    char buf[8];
    {  // A reader parked on b; the peer a closes: EOF.
      auto [a, b] = DuplexPipe::create(8);
      auto r = spawn([&b = b, &buf] { return b.read(buf); });
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      CHECK(!r.is_finished());
      a.close();
      auto n = r.join();
      REQUIRE(n.ok());
      CHECK(*n == 0);
    }
    {  // A reader parked on b; b itself is closed by another fiber.
      auto [a, b] = DuplexPipe::create(8);
      auto r = spawn([&b = b, &buf] { return b.read(buf).status(); });
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      b.close();
      absl::Status s = r.join();
      CHECK(s.code() == StatusCode::kFailedPrecondition);
      CHECK(msg(s) == "PipeEnd::read: pipe end is closed");
    }
    {  // A writer parked on a full a; the peer b closes: broken pipe.
      auto [a, b] = DuplexPipe::create(8);
      auto w = spawn([&a = a] { return a.write_all("0123456789abcdef"); });
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      CHECK(!w.is_finished());
      b.close();
      absl::Status s = w.join();
      CHECK(s.code() == StatusCode::kFailedPrecondition);
      CHECK(msg(s) == "PipeEnd::write_all: broken pipe (the peer end is closed)");
    }
    {  // Two writers parked on a (one on the ring, one on the write_all
       // lock); a itself is closed.
      auto [a, b] = DuplexPipe::create(8);
      auto w1 = spawn([&a = a] { return a.write_all("0123456789abcdef"); });
      while (b.readable() < 8) (void)this_fiber::sleep_for(absl::Milliseconds(1));
      auto w2 = spawn([&a = a] { return a.write_all("xyz"); });
      (void)this_fiber::sleep_for(absl::Milliseconds(5));
      CHECK(!w1.is_finished());
      CHECK(!w2.is_finished());
      a.close();
      CHECK(msg(w1.join()) == "PipeEnd::write_all: pipe end is closed");
      CHECK(msg(w2.join()) == "PipeEnd::write_all: pipe end is closed");
      auto n = b.read(buf);  // what w1 got in before the close
      REQUIRE(n.ok());
      CHECK(std::string(buf, *n) == "01234567");
      CHECK(*b.read(buf) == 0);
    }
  });
}

TEST_CASE("PipeEnd: read and write timeouts give kDeadlineExceeded; the end stays usable") {
  auto rt = *Runtime::create({.workers = 1});
  rt->block_on([] {
    auto [a, b] = DuplexPipe::create(4);
    b.set_read_timeout(absl::Milliseconds(5));
    char buf[8];
    absl::Time t0 = absl::Now();
    auto n = b.read(buf);
    CHECK(n.status().code() == StatusCode::kDeadlineExceeded);
    CHECK(msg(n.status()) == "PipeEnd::read: read timed out");
    CHECK(absl::Now() - t0 >= absl::Milliseconds(5));
    CHECK(a.write_all("ok").ok());
    n = b.read(buf);  // data present: no wait
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "ok");
    b.set_read_timeout(absl::ZeroDuration());  // poll
    CHECK(b.read(buf).status().code() == StatusCode::kDeadlineExceeded);
    b.set_read_timeout(absl::InfiniteDuration());
    auto late = spawn([&a = a] {
      (void)this_fiber::sleep_for(absl::Milliseconds(10));
      return a.write_all("late");
    });
    n = b.read(buf);  // waits as long as it takes
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "late");
    CHECK(late.join().ok());

    a.set_write_timeout(absl::Milliseconds(5));
    absl::Status s = a.write_all("123456");  // 4 fit, then the wait times out
    CHECK(s.code() == StatusCode::kDeadlineExceeded);
    CHECK(msg(s) == "PipeEnd::write_all: write timed out");
    CHECK(b.readable() == 4);
    CHECK(a.write("x").status().code() == StatusCode::kDeadlineExceeded);
    n = b.read(buf);
    REQUIRE(n.ok());
    CHECK(std::string(buf, *n) == "1234");
    a.set_write_timeout(absl::InfiniteDuration());
    CHECK(a.write_all("56").ok());
  });
}

TEST_CASE("DuplexPipe between plain threads, no runtime") {
  auto [a, b] = DuplexPipe::create(64);
  constexpr int kBytes = 200000;
  std::thread writer([&a = a] {
    std::string chunk;
    for (int i = 0; i < kBytes; i += 100) {
      chunk.clear();
      for (int j = i; j < i + 100; ++j) chunk += static_cast<char>(j % 251);
      if (!a.write_all(chunk).ok()) return;
    }
    a.close();
  });
  uint64_t count = 0;
  bool in_order = true;
  char buf[333];
  for (;;) {
    auto n = b.read(buf);
    REQUIRE(n.ok());
    if (*n == 0) break;
    for (size_t i = 0; i < *n; ++i) {
      in_order &= buf[i] == static_cast<char>((count + i) % 251);
    }
    count += *n;
  }
  writer.join();
  CHECK(count == kBytes);
  CHECK(in_order);
}

TEST_CASE("read_line over a pipe written one byte at a time from another fiber") {
  testing::for_each_worker_count({1, 2}, [](int workers) {
    auto rt = *Runtime::create({.workers = workers});
    rt->block_on([] {
      auto [a, b] = DuplexPipe::create(3);
      std::string long_line(5000, 'L');
      std::string text = "GET / HTTP/1.1\r\nHost: x\r\n\r\n" + long_line + "\nno newline";
      auto writer = spawn([&a = a, &text] {
        for (char c : text) {
          if (!a.write_all(std::string_view(&c, 1)).ok()) return false;
          if (c == '\n') this_fiber::yield();
        }
        return a.shutdown_write().ok();
      });
      BufferedReader in(b, 16);
      std::string line;
      std::vector<std::string> got;
      absl::Status s;
      while ((s = in.read_line(&line)).ok()) got.push_back(line);
      CHECK(s.code() == StatusCode::kOutOfRange);
      CHECK(writer.join());
      REQUIRE(got.size() == 5);
      CHECK(got[0] == "GET / HTTP/1.1");
      CHECK(got[1] == "Host: x");
      CHECK(got[2] == "");
      CHECK(got[3] == long_line);
      CHECK(got[4] == "no newline");
    });
  });
}

// ---------------------------------------------------------------------------
// Pipeline: DuplexPipe -> copy() -> two transforms -> BufferedWriter ->
// TcpStream on loopback.

TEST_CASE("pipeline: copy from a pipe through two transforms into a buffered TCP stream") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto listener = TcpListener::bind(SocketAddress::loopback_v4(0));
    REQUIRE(listener.ok());
    auto addr = listener->local_address();
    REQUIRE(addr.ok());

    std::string input;
    uint32_t x = 12345;
    for (int i = 0; i < 200000; ++i) {
      x = x * 1103515245 + 12345;
      uint32_t r = (x >> 16) % 30;
      input += r < 26 ? static_cast<char>('a' + r) : (r < 29 ? ' ' : '\n');
    }
    // The pipeline applies dbl_a first, then upper.
    std::string expected;
    for (char c : input) {
      expected += upper(std::string_view(&c, 1));
      if (c == 'a') expected += 'A';
    }

    auto server = spawn([&listener] {
      auto acc = listener->accept();
      REQUIRE(acc.ok());
      std::string got;
      char buf[4096];
      for (;;) {
        auto n = acc->stream.read(buf);
        REQUIRE(n.ok());
        if (*n == 0) break;
        got.append(buf, *n);
      }
      return got;
    });

    auto client = spawn([&addr, &input] {
      auto conn = TcpStream::connect(*addr);
      REQUIRE(conn.ok());
      auto [in, out] = DuplexPipe::create(1000);
      auto producer = spawn([&in = in, &input] {
        size_t off = 0, step = 1;
        while (off < input.size()) {
          size_t n = std::min(step, input.size() - off);
          if (!in.write_all(std::string_view(input).substr(off, n)).ok()) return false;
          off += n;
          step = step % 97 + 1;
        }
        return in.shutdown_write().ok();
      });
      BufferedWriter<TcpStream> buffered(*conn, 4096);
      auto up = transform(buffered, upper);
      auto dbl_a = transform(up, [](std::string_view c) -> absl::StatusOr<std::string> {
        std::string s;
        s.reserve(c.size() * 2);
        for (char ch : c) {
          s += ch;
          if (ch == 'a') s += 'a';
        }
        return s;
      });
      auto copied = copy(out, dbl_a, 777);
      CHECK(producer.join());
      REQUIRE(copied.ok());
      CHECK(*copied == input.size());
      CHECK(dbl_a.flush().ok());
      CHECK(buffered.buffered() == 0);
      CHECK(conn->shutdown(Shutdown::kWrite).ok());
      return *copied;
    });

    CHECK(client.join() == input.size());
    std::string got = server.join();
    CHECK(got.size() == expected.size());
    CHECK(got == expected);
  });
}

TEST_CASE("copy into a closed TCP peer reports the write side") {
  auto rt = *Runtime::create({.workers = 2});
  rt->block_on([] {
    auto listener = TcpListener::bind(SocketAddress::loopback_v4(0));
    REQUIRE(listener.ok());
    auto conn = TcpStream::connect(*listener->local_address());
    REQUIRE(conn.ok());
    auto acc = listener->accept();
    REQUIRE(acc.ok());
    CHECK(acc->stream.close().ok());
    CHECK(conn->close().ok());  // writes on our own closed stream fail
    auto [a, b] = DuplexPipe::create(64);
    CHECK(a.write_all("data").ok());
    a.close();
    auto n = copy(b, *conn);
    CHECK(!n.ok());
    CHECK(n.status().code() == StatusCode::kFailedPrecondition);
    CHECK(starts_with(n.status(), "copy: write: "));
  });
}

// ---------------------------------------------------------------------------
// Concurrency with exact counts: 8 writer fibers over 4 pipes (two per
// pipe, sharing one end), a reader per pipe that checks every frame and
// acknowledges it over the other direction, and an ack reader per pipe,
// on 4 workers.

uint64_t fnv1a(uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  return h;
}
constexpr uint64_t kFnvBasis = 14695981039346656037ULL;

uint32_t frame_len(uint32_t id, uint32_t seq) { return (id * 7919u + seq * 104729u) % 700u + 1u; }
char payload_byte(uint32_t id, uint32_t seq, uint32_t k) {
  return static_cast<char>((id * 31u + seq * 17u + k * 13u) & 0xffu);
}

void put_u32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }
uint32_t get_u32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

TEST_CASE("pipes under concurrency: 8 writers, exact frames, bytes and checksums") {
  constexpr int kPipes = 4;
  constexpr int kWritersPerPipe = 2;
  constexpr int kWriters = kPipes * kWritersPerPipe;
  const uint32_t frames = static_cast<uint32_t>(1500 * testing::scale());

  struct WriterResult {
    uint64_t bytes = 0;
    uint64_t checksum = kFnvBasis;
    bool ok = false;
  };
  struct ReaderResult {
    std::vector<uint64_t> bytes = std::vector<uint64_t>(kWriters, 0);
    std::vector<uint64_t> checksum = std::vector<uint64_t>(kWriters, kFnvBasis);
    std::vector<uint32_t> next_seq = std::vector<uint32_t>(kWriters, 0);
    uint64_t frames = 0;
    uint64_t bad = 0;  // out-of-order frames, wrong ids, wrong payloads
    bool clean_eof = false;
  };
  struct AckResult {
    uint64_t acks = 0;
    std::vector<uint64_t> seq_sum = std::vector<uint64_t>(kWriters, 0);
    bool clean_eof = false;
  };

  auto rt = *Runtime::create({.workers = 4});
  std::vector<WriterResult> wr(kWriters);
  std::vector<ReaderResult> rr(kPipes);
  std::vector<AckResult> ar(kPipes);
  rt->block_on([&] {
    std::vector<PipeEnd> fronts, backs;
    for (int p = 0; p < kPipes; ++p) {
      auto [f, b] = DuplexPipe::create(p % 2 == 0 ? 4096 : 333);
      fronts.push_back(std::move(f));
      backs.push_back(std::move(b));
    }
    std::vector<JoinHandle<void>> fibers;
    // Readers: parse and verify frames from the back end, ack each one.
    for (int p = 0; p < kPipes; ++p) {
      fibers.push_back(spawn([&back = backs[p], &res = rr[p]] {
        BufferedReader in(back, 1024);
        BufferedWriter acks(back, 64);
        char header[12];
        std::string payload;
        // On any failure, close the end so that no other fiber waits forever.
        struct CloseUnlessDone {
          PipeEnd& end;
          bool done = false;
          ~CloseUnlessDone() {
            if (!done) end.close();
          }
        } guard{back};
        for (;;) {
          absl::Status s = in.read_exact(header);
          if (s.code() == StatusCode::kOutOfRange && in.buffered() == 0) {
            res.clean_eof = msg(s).find("after 0 of 12") != std::string::npos;
            break;
          }
          if (!s.ok()) return;
          uint32_t id = get_u32(header), seq = get_u32(header + 4), len = get_u32(header + 8);
          if (id >= kWriters || len != frame_len(id, seq) || seq != res.next_seq[id]) {
            ++res.bad;
            return;
          }
          payload.resize(len);
          if (!in.read_exact(std::span<char>(payload.data(), payload.size())).ok()) return;
          for (uint32_t k = 0; k < len; ++k) {
            if (payload[k] != payload_byte(id, seq, k)) {
              ++res.bad;
              break;
            }
          }
          res.bytes[id] += len;
          res.checksum[id] = fnv1a(res.checksum[id], payload);
          ++res.next_seq[id];
          ++res.frames;
          std::string ack;
          put_u32(&ack, id);
          put_u32(&ack, seq);
          if (!acks.write_all(ack).ok()) return;
          if (res.frames % 16 == 0 && !acks.flush().ok()) return;
        }
        if (acks.flush().ok() && back.shutdown_write().ok()) guard.done = true;
      }));
    }
    // Ack readers on the front ends.
    for (int p = 0; p < kPipes; ++p) {
      fibers.push_back(spawn([&front = fronts[p], &res = ar[p]] {
        BufferedReader in(front, 100);
        char ack[8];
        for (;;) {
          absl::Status s = in.read_exact(ack);
          if (s.code() == StatusCode::kOutOfRange) {
            res.clean_eof = msg(s).find("after 0 of 8") != std::string::npos;
            return;
          }
          uint32_t id = get_u32(ack);
          if (!s.ok() || id >= kWriters) {
            front.close();  // unblocks the writers and the reader
            return;
          }
          res.seq_sum[id] += get_u32(ack + 4);
          ++res.acks;
        }
      }));
    }
    // Writers: two per pipe, sharing its front end; each frame is one
    // write_all(), so frames never interleave.
    for (int p = 0; p < kPipes; ++p) {
      std::vector<JoinHandle<void>> writers;
      for (int w = 0; w < kWritersPerPipe; ++w) {
        uint32_t id = static_cast<uint32_t>(p * kWritersPerPipe + w);
        writers.push_back(spawn([&front = fronts[p], &res = wr[id], id, frames] {
          std::string frame, payload;
          for (uint32_t seq = 0; seq < frames; ++seq) {
            uint32_t len = frame_len(id, seq);
            payload.clear();
            for (uint32_t k = 0; k < len; ++k) payload += payload_byte(id, seq, k);
            frame.clear();
            put_u32(&frame, id);
            put_u32(&frame, seq);
            put_u32(&frame, len);
            frame += payload;
            if (!front.write_all(frame).ok()) return;
            res.bytes += len;
            res.checksum = fnv1a(res.checksum, payload);
            if (seq % 64 == 0) this_fiber::yield();
          }
          res.ok = true;
        }));
      }
      // Closes the pipe's front for writing once both writers are done.
      fibers.push_back(spawn([&front = fronts[p], ws = std::move(writers)]() mutable {
        for (auto& h : ws) h.join();
        (void)front.shutdown_write();
      }));
    }
    for (auto& f : fibers) f.join();
  });

  uint64_t sent_bytes = 0, received_bytes = 0, received_frames = 0, acks = 0;
  for (int id = 0; id < kWriters; ++id) {
    CAPTURE(id);
    int p = id / kWritersPerPipe;
    CHECK(wr[id].ok);
    CHECK(rr[p].next_seq[id] == frames);
    CHECK(rr[p].bytes[id] == wr[id].bytes);
    CHECK(rr[p].checksum[id] == wr[id].checksum);
    CHECK(ar[p].seq_sum[id] == uint64_t{frames} * (frames - 1) / 2);
    sent_bytes += wr[id].bytes;
  }
  for (int p = 0; p < kPipes; ++p) {
    CAPTURE(p);
    CHECK(rr[p].bad == 0);
    CHECK(rr[p].clean_eof);
    CHECK(ar[p].clean_eof);
    CHECK(ar[p].acks == rr[p].frames);
    for (uint64_t b : rr[p].bytes) received_bytes += b;
    received_frames += rr[p].frames;
    acks += ar[p].acks;
  }
  // The totals are fixed by frame_len(): compute them independently.
  uint64_t expect_bytes = 0;
  for (uint32_t id = 0; id < kWriters; ++id) {
    for (uint32_t seq = 0; seq < frames; ++seq) expect_bytes += frame_len(id, seq);
  }
  CHECK(sent_bytes == expect_bytes);
  CHECK(received_bytes == expect_bytes);
  CHECK(received_frames == uint64_t{kWriters} * frames);
  CHECK(acks == uint64_t{kWriters} * frames);
}

}  // namespace
}  // namespace weft::net
