// The demo's handling of Ctrl-C and SIGTERM: SIGINT, SIGTERM and SIGHUP set
// a flag instead of killing the demo, so it can stop its children
// (harness/child_process.h) and remove its files; SIGPIPE is ignored.
#pragma once

namespace malv::demo {

void install_stop_signals();
bool stop_requested();  // stop_signal() (demo/demo.h) says which signal

}  // namespace malv::demo
