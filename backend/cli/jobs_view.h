/* What `sdm jobs` shows: a table of the jobs sdmd knows, and the live view of
 * `sdm jobs --watch` fed by the JobChanged and JobProgress signals.
 *
 * On a terminal the live view redraws one line per running job in place, with a progress
 * bar, and leaves a line behind for every job that ends. Elsewhere (a pipe, a log) it
 * prints plain lines a script can follow: one per state change, per new step and per
 * tenth of progress, each starting with the job id. Writes to stdout. Not thread-safe:
 * used from the CLI's main loop only. */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/daemon/dbus_api.h"

namespace sdm::cli {

void PrintJobTable(const std::vector<dbus::JobView> &jobs);

class JobWatch {
public:
    explicit JobWatch(bool tty) : tty_(tty) {}

    void Changed(const dbus::JobView &job);
    void Progress(const std::string &id, const std::string &step, uint64_t done,
                  uint64_t total);
    /* Jobs seen pending or running and not yet ended. */
    size_t active() const { return rows_.size(); }

private:
    struct Row {
        dbus::JobView view;
        int last_tenth = -1;
    };

    Row *FindRow(const std::string &id);
    /* Prints a line that stays, above the live area on a terminal. */
    void Emit(const std::string &line);
    void Redraw();

    bool tty_;
    std::vector<Row> rows_;  /* in the order the jobs appeared */
    size_t drawn_ = 0;       /* live lines on screen below the last permanent one */
};

}  // namespace sdm::cli
