# `cmake --install <build> [--prefix DIR]` for longlink. Included from the top-level CMakeLists.txt after the
# add_subdirectory calls, since it names their targets. It installs
#   <prefix>/bin/longlink-gateway, longlink-loadgen
#   <prefix>/share/longlink/dashboards/*.json             Grafana dashboards (provisioned from this directory)
#   <prefix>/share/longlink/grafana/provisioning/         Grafana datasource and dashboard provider
#   <prefix>/share/longlink/prometheus/                   prometheus.yml, alerts.yml, targets/
#   <prefix>/share/longlink/systemd/longlink-gateway.service
#   <prefix>/share/longlink/sysctl/99-longlink.conf
#   <prefix>/share/longlink/web/                          the web chat page (--web-root)
#   <prefix>/share/longlink/scenarios/*.yaml               the loadgen's scenarios
#   <prefix>/share/doc/longlink/operations.md
# The unit and the Grafana dashboard provider name /usr/local, the default prefix; both are rewritten at
# install time for another prefix (also one given to cmake --install --prefix). docs/operations.md has the
# steps that follow (copying the unit to /etc/systemd/system, the sysctls to /etc/sysctl.d).
include(GNUInstallDirs)
get_filename_component(LONGLINK_SOURCE_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(LONGLINK_SHARE_DIR "${CMAKE_INSTALL_DATADIR}/longlink")

install(TARGETS longlink-gateway longlink-loadgen RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")

install(DIRECTORY "${LONGLINK_SOURCE_ROOT}/dashboards/" DESTINATION "${LONGLINK_SHARE_DIR}/dashboards"
        FILES_MATCHING PATTERN "*.json"
        PATTERN "provisioning" EXCLUDE PATTERN "prometheus" EXCLUDE)
install(DIRECTORY "${LONGLINK_SOURCE_ROOT}/dashboards/prometheus/" DESTINATION "${LONGLINK_SHARE_DIR}/prometheus"
        FILES_MATCHING PATTERN "*.yml")
install(FILES "${LONGLINK_SOURCE_ROOT}/dashboards/provisioning/datasources/longlink-prometheus.yaml"
        DESTINATION "${LONGLINK_SHARE_DIR}/grafana/provisioning/datasources")
install(FILES "${LONGLINK_SOURCE_ROOT}/deploy/99-longlink.conf" DESTINATION "${LONGLINK_SHARE_DIR}/sysctl")
install(DIRECTORY "${LONGLINK_SOURCE_ROOT}/web/" DESTINATION "${LONGLINK_SHARE_DIR}/web")
install(DIRECTORY "${LONGLINK_SOURCE_ROOT}/loadgen/scenarios/" DESTINATION "${LONGLINK_SHARE_DIR}/scenarios"
        FILES_MATCHING PATTERN "*.yaml")
install(FILES "${LONGLINK_SOURCE_ROOT}/docs/operations.md" DESTINATION "${CMAKE_INSTALL_DOCDIR}")

# Files that name the prefix: copied with /usr/local/ replaced by the prefix in force when installing.
install(CODE "set(LONGLINK_SOURCE_ROOT \"${LONGLINK_SOURCE_ROOT}\")
set(LONGLINK_SHARE_DIR \"${LONGLINK_SHARE_DIR}\")
set(LONGLINK_STAGE_DIR \"${CMAKE_BINARY_DIR}/longlink-install-stage\")")
install(CODE [[
function(longlink_install_with_prefix source destination)
  file(READ "${LONGLINK_SOURCE_ROOT}/${source}" text)
  string(REPLACE "/usr/local/" "${CMAKE_INSTALL_PREFIX}/" text "${text}")
  get_filename_component(name "${source}" NAME)
  file(WRITE "${LONGLINK_STAGE_DIR}/${name}" "${text}")
  file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/${destination}" TYPE FILE FILES "${LONGLINK_STAGE_DIR}/${name}")
endfunction()
longlink_install_with_prefix(deploy/longlink-gateway.service "${LONGLINK_SHARE_DIR}/systemd")
longlink_install_with_prefix(dashboards/provisioning/dashboards/longlink.yaml
                             "${LONGLINK_SHARE_DIR}/grafana/provisioning/dashboards")
]])
