/* A simulated host's lease user for the sanlock tests: one process bound to one sanlock
 * daemon (SANLOCK_RUN_DIR), driven one command per line on stdin, one reply line on
 * stdout ("ok [detail]" or "error <code> <message>").
 *
 *     sanlock_host_helper <lockspace> <ids> <leases> <owners> <host id> <io_timeout>
 *
 *     join <timeout ms>                    Join + WaitJoined; replies "ok <generation>"
 *     acquire <slot> ex|sh <timeout ms> [owners]
 *                                          keeps the lease (of leases, or of owners) until
 *                                          released or killed
 *     release <slot>                       drops one lease of that slot
 *     initchunk <chunk>
 *     initowner <owner>
 *     hosts                                replies "ok <id>:<generation>:<state> ..."
 *     leave
 *
 * End of input ends it (its manager leaves the lockspace if it joined it); SIGKILL is how
 * the tests make a holder die. Single-threaded. */
#include <sys/prctl.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "backend/sanlock/sanlock_lease.h"

namespace {

std::string Reply(const sdm::Status &status, const std::string &detail = "")
{
    if (status.ok())
        return detail.empty() ? "ok" : "ok " + detail;
    std::string line = std::string("error ") + sdm::ErrorCodeName(status.code()) + " " +
                       status.message();
    for (char &c : line) {
        if (c == '\n')
            c = ' ';
    }
    return line;
}

}  // namespace

int main(int argc, char **argv)
{
    if (argc != 7) {
        std::cerr << "usage: sanlock_host_helper LOCKSPACE IDS LEASES OWNERS HOST_ID "
                     "IO_TIMEOUT\n";
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    sdm::SanlockGeometry g;
    g.lockspace = argv[1];
    g.ids_path = argv[2];
    g.leases_path = argv[3];
    g.owners_path = argv[4];
    g.io_timeout = static_cast<uint32_t>(std::stoul(argv[6]));
    sdm::SanlockLeaseManager leases(g, static_cast<uint32_t>(std::stoul(argv[5])));
    std::multimap<uint64_t, std::unique_ptr<sdm::LeaseHandle>> held;

    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        std::string reply;
        if (cmd == "join") {
            long long ms = 0;
            in >> ms;
            sdm::Status s = leases.Join();
            if (s.ok())
                s = leases.WaitJoined(std::chrono::milliseconds(ms));
            reply = Reply(s, std::to_string(leases.generation()));
        } else if (cmd == "acquire") {
            uint64_t slot = 0;
            std::string mode, area;
            long long ms = 0;
            in >> slot >> mode >> ms >> area;
            auto lease = leases.Acquire(
                area == "owners" ? sdm::LeaseArea::kOwners : sdm::LeaseArea::kLeases, slot,
                mode == "sh" ? sdm::LeaseMode::kShared : sdm::LeaseMode::kExclusive,
                std::chrono::milliseconds(ms));
            if (lease.ok())
                held.emplace(slot, std::move(*lease));
            reply = Reply(lease.ok() ? sdm::Status::Ok() : lease.status());
        } else if (cmd == "release") {
            uint64_t slot = 0;
            in >> slot;
            auto it = held.find(slot);
            if (it == held.end()) {
                reply = "error not-found no lease of slot " + std::to_string(slot) + " held";
            } else {
                held.erase(it);
                reply = "ok";
            }
        } else if (cmd == "initchunk") {
            uint64_t chunk = 0;
            in >> chunk;
            reply = Reply(leases.InitChunk(chunk));
        } else if (cmd == "initowner") {
            uint32_t owner = 0;
            in >> owner;
            reply = Reply(leases.InitOwner(owner));
        } else if (cmd == "hosts") {
            auto hosts = leases.Hosts();
            std::string detail;
            if (hosts.ok()) {
                for (const auto &h : *hosts)
                    detail += (detail.empty() ? "" : " ") + std::to_string(h.host_id) + ":" +
                              std::to_string(h.generation) + ":" + h.state;
            }
            reply = Reply(hosts.ok() ? sdm::Status::Ok() : hosts.status(), detail);
        } else if (cmd == "leave") {
            held.clear();
            reply = Reply(leases.Leave());
        } else {
            reply = "error invalid-argument unknown command: " + line;
        }
        std::cout << reply << std::endl;
    }
    return 0;
}
