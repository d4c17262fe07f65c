/* Implementation of the jobs views; see jobs_view.h. */
#include "backend/cli/jobs_view.h"

#include <algorithm>
#include <cstdio>

#include "backend/engine/i18n.h"
#include "backend/tools/cli_util.h"

namespace sdm::cli {

namespace {

constexpr int kBarWidth = 20;

std::string Label(const JobSnapshot &job)
{
    return job.id + " " + job.type + " '" + job.object + "'";
}

int Percent(uint64_t done, uint64_t total)
{
    return static_cast<int>(std::min(done, total) * 100 / total);
}

std::string ProgressText(const JobSnapshot &job)
{
    if (job.total == 0)
        return "-";
    return Printf("%3d%% %s / %s", Percent(job.done, job.total), HumanSize(job.done).c_str(),
                  HumanSize(job.total).c_str());
}

/* "failed: busy: ..." for jobs that ended badly, the state's name otherwise. */
std::string Outcome(const JobSnapshot &job)
{
    if (job.error.ok())
        return JobStateName(job.state);
    return Printf("%s: %s: %s", JobStateName(job.state), ErrorCodeName(job.error.code()),
                  job.error.message().c_str());
}

}  // namespace

void PrintJobTable(const std::vector<dbus::JobView> &jobs)
{
    printf("%-8s %-7s %-8s %-24s %-20s %s\n", "ID", "TYPE", "STATE", "PROGRESS", "STEP",
           "OBJECT");
    for (const auto &view : jobs) {
        const JobSnapshot &job = view.job;
        printf("%-8s %-7s %-8s %-24s %-20s %s\n", job.id.c_str(), job.type.c_str(),
               JobStateName(job.state), ProgressText(job).c_str(),
               job.step.empty() ? "-" : job.step.c_str(), job.object.c_str());
        if (!job.error.ok())
            printf("         %s: %s\n", ErrorCodeName(job.error.code()),
                   job.error.message().c_str());
    }
}

JobWatch::Row *JobWatch::FindRow(const std::string &id)
{
    auto it = std::find_if(rows_.begin(), rows_.end(),
                           [&id](const Row &row) { return row.view.job.id == id; });
    return it == rows_.end() ? nullptr : &*it;
}

void JobWatch::Changed(const dbus::JobView &view)
{
    const JobSnapshot &job = view.job;
    Row *row = FindRow(job.id);
    if (dbus::IsFinished(job.state)) {
        if (row)
            rows_.erase(rows_.begin() + (row - rows_.data()));
        Emit(Label(job) + ": " + Outcome(job));
        return;
    }
    bool changed = !row || row->view.job.state != job.state;
    if (!row) {
        rows_.push_back({view, -1});
        row = &rows_.back();
    }
    row->view = view;
    if (!tty_ && changed)
        Emit(Label(job) + ": " + JobStateName(job.state));
    Redraw();
}

void JobWatch::Progress(const std::string &id, const std::string &step, uint64_t done,
                        uint64_t total)
{
    Row *row = FindRow(id);
    if (!row)
        return; /* its JobChanged (or the first listing) introduces it */
    JobSnapshot &job = row->view.job;
    bool new_step = job.step != step;
    job.step = step;
    job.done = done;
    job.total = total;
    if (tty_) {
        Redraw();
        return;
    }
    if (new_step)
        Emit(Label(job) + ": step " + step);
    if (total > 0 && Percent(done, total) / 10 > row->last_tenth) {
        row->last_tenth = Percent(done, total) / 10;
        Emit(Printf("%s: %d%% (%s of %s)", Label(job).c_str(), Percent(done, total),
                    HumanSize(done).c_str(), HumanSize(total).c_str()));
    }
}

void JobWatch::Emit(const std::string &line)
{
    if (tty_ && drawn_ > 0)
        printf("\033[%zuA", drawn_);
    printf(tty_ ? "\r\033[K%s\n" : "%s\n", line.c_str());
    if (tty_) {
        /* The live lines that were below are now stale: draw them afresh. */
        printf("\033[J");
        drawn_ = 0;
        Redraw();
    }
    fflush(stdout);
}

void JobWatch::Redraw()
{
    if (!tty_)
        return;
    if (drawn_ > 0)
        printf("\033[%zuA", drawn_);
    for (const Row &row : rows_) {
        const JobSnapshot &job = row.view.job;
        std::string bar;
        if (job.total > 0) {
            int filled = Percent(job.done, job.total) * kBarWidth / 100;
            bar = "[" + std::string(filled, '#') + std::string(kBarWidth - filled, ' ') + "] ";
        }
        printf("\r\033[K%s %s %s%s %s\n", Label(job).c_str(), JobStateName(job.state),
               bar.c_str(), ProgressText(job).c_str(), job.step.c_str());
    }
    if (rows_.size() < drawn_)
        printf("\033[J");
    drawn_ = rows_.size();
    fflush(stdout);
}

}  // namespace sdm::cli
