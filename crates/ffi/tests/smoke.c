/* C smoke test of the Shoal C ABI: compiled with gcc and run by tests/c_abi.rs.
 * argv[1]: a master playlist URL. Exit 0 when every check passed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "shoal.h"

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); return 1; } } while (0)

int main(int argc, char **argv) {
    CHECK(argc == 2, "usage: smoke MASTER_URL");
    CHECK(strlen(shoal_version()) > 0, "empty version");

    /* Bad input: NULL, broken JSON, unknown field. */
    CHECK(shoal_client_start(NULL) == NULL, "NULL config accepted");
    CHECK(shoal_client_start("{not json") == NULL, "broken JSON accepted");
    char *err = shoal_last_error();
    CHECK(err && strlen(err) > 0, "no error text");
    shoal_string_free(err);
    CHECK(shoal_client_start("{\"url\":\"http://h/live/s/m.m3u8\",\"nope\":1}") == NULL, "unknown field accepted");

    char cfg[1024];
    snprintf(cfg, sizeof cfg, "{\"url\":\"%s\",\"udp_bind\":\"127.0.0.1:0\"}", argv[1]);
    ShoalClient *c = shoal_client_start(cfg);
    if (!c) { err = shoal_last_error(); fprintf(stderr, "start failed: %s\n", err); shoal_string_free(err); return 1; }

    char *url = shoal_client_local_url(c);
    CHECK(url && strncmp(url, "http://127.0.0.1:", 17) == 0, "local url %s", url ? url : "(null)");
    CHECK(strstr(url, "/master.m3u8") != NULL, "local url %s", url);
    printf("LOCAL_URL %s\n", url);
    fflush(stdout);
    shoal_string_free(url);

    char *stats = shoal_client_stats_json(c);
    CHECK(stats && stats[0] == '{' && strstr(stats, "\"p2p_share\"") != NULL, "stats %s", stats ? stats : "(null)");
    shoal_string_free(stats);

    /* Let the test runner fetch through the proxy, then stop. */
    char line[16];
    if (!fgets(line, sizeof line, stdin)) line[0] = 0;

    stats = shoal_client_stats_json(c);
    printf("STATS %s\n", stats);
    shoal_string_free(stats);
    char *report = shoal_client_stop(c);
    CHECK(report && strstr(report, "\"stats\"") != NULL, "report %s", report ? report : "(null)");
    printf("REPORT %s\n", report);
    shoal_string_free(report);
    CHECK(shoal_client_stats_json(NULL) == NULL, "NULL handle gave stats");
    shoal_string_free(NULL);
    printf("C_SMOKE_OK\n");
    return 0;
}
