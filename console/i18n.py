"""Console labels in Chinese (the default: the bureau's staff read Chinese) and English.

Device kinds, severities and states are translated; names the standards give (GB 3838 classes,
HJ 633 categories, OCPP and SunSpec statuses) stay as the standards write them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")

# key: (中文, English)
LABELS: dict[str, tuple[str, str]] = {
    "app_title": ("envgrid 值班台", "envgrid operator console"),
    "skip_to_main": ("跳到主要内容", "Skip to main content"),
    "nav_alerts": ("告警", "Alerts"),
    "nav_devices": ("设备", "Devices"),
    "nav_main": ("主导航", "Main navigation"),
    "signed_in_as": ("当前值班员：", "Signed in as:"),
    "sign_out": ("退出", "Sign out"),
    "sign_in": ("登录", "Sign in"),
    "sign_in_title": ("值班员登录", "Operator sign-in"),
    "operator_name": ("值班员账号", "Operator name"),
    "password": ("密码", "Password"),
    "bad_login": ("账号或密码不正确。", "Wrong operator name or password."),
    "too_many_attempts": (
        "登录失败次数过多，请 10 分钟后再试。",
        "Too many failed sign-ins: try again in 10 minutes.",
    ),
    "no_operators": (
        "尚未配置值班员：请在服务器上运行 envgrid operators add 账号。",
        "No operators are configured: run `envgrid operators add NAME` on the server.",
    ),
    "session_needed": ("请先登录。", "Please sign in first."),
    "csrf_failed": (
        "表单已过期，请返回页面重试。",
        "The form has expired: go back, reload the page and try again.",
    ),
    "not_found": ("未找到", "Not found"),
    "no_such_alert": ("没有这条告警。", "There is no such alert."),
    "back_to_alerts": ("返回告警列表", "Back to the alerts"),
    "language": ("语言", "Language"),
    "switch_lang": ("English", "中文"),
    "active_alerts": ("当前告警", "Active alerts"),
    "alert_history": ("告警历史", "Alert history"),
    "no_active": ("当前没有告警。", "No active alerts."),
    "no_history": ("没有历史告警。", "No alerts in the history."),
    "n_active": ("{n} 条当前告警", "{n} active alerts"),
    "n_silenced_hidden": ("另有 {n} 条已静音告警未显示", "{n} silenced alerts hidden"),
    "show_silenced": ("显示已静音告警", "Show silenced alerts"),
    "filters": ("筛选", "Filters"),
    "apply": ("应用", "Apply"),
    "all": ("全部", "All"),
    "severity": ("级别", "Severity"),
    "kind": ("设备类型", "Kind"),
    "county": ("区县", "County"),
    "site": ("站点", "Site"),
    "device": ("设备", "Device"),
    "rule": ("规则", "Rule"),
    "value": ("数值", "Value"),
    "since": ("开始时间", "Since"),
    "state": ("状态", "State"),
    "acked_by": ("确认人", "Acknowledged by"),
    "not_acked": ("未确认", "Not acknowledged"),
    "silenced": ("已静音", "Silenced"),
    "started": ("开始", "Started"),
    "resolved_at": ("恢复", "Resolved"),
    "duration": ("持续", "Duration"),
    "live": ("实时更新", "Live"),
    "live_lost": ("与服务器的连接中断，正在重试…", "Connection to the server lost, retrying…"),
    "updated": ("更新于", "Updated"),
    "older": ("更早的告警", "Older alerts"),
    "newer": ("较新的告警", "Newer alerts"),
    "details": ("详情", "Details"),
    # alert detail
    "alert": ("告警", "Alert"),
    "readings": ("告警前后读数", "Readings around the breach"),
    "chart_unavailable": ("读数暂不可用：", "Readings unavailable: "),
    "no_readings": ("此时间段内没有读数。", "No readings in this period."),
    "nodata_chart": (
        "这是离线告警：设备在此期间没有上报读数。",
        "A no-data alert: the device sent no readings in this period.",
    ),
    "chart_table": ("读数表", "Readings as a table"),
    "time": ("时间", "Time"),
    "limit": ("限值", "limit"),
    "clears_at": ("恢复值", "clears at"),
    "breach": ("越限", "breach"),
    "latest": ("最新", "latest"),
    "min": ("最小", "min"),
    "max": ("最大", "max"),
    "rule_and_standard": ("规则与依据标准", "Rule and standard"),
    "rule_id": ("规则编号", "Rule id"),
    "description": ("说明", "Description"),
    "condition": ("触发条件", "Condition"),
    "clear_condition": ("恢复条件", "Clears when"),
    "hold_for": ("持续时间", "Must hold for"),
    "at_once": ("立即", "at once"),
    "nodata_after": ("无数据时长", "Silent for"),
    "standard": ("依据标准", "Standard"),
    "rule_source": ("规则文件", "Rule file"),
    "rule_gone": (
        "该规则已不在当前规则集中。",
        "This rule is no longer in the loaded rule set.",
    ),
    "message": ("消息", "Message"),
    "device_facts": ("设备档案", "Device registry"),
    "not_registered": ("该设备未登记。", "This device is not in the registry."),
    "name": ("名称", "Name"),
    "location": ("坐标", "Location"),
    "acknowledge": ("确认告警", "Acknowledge"),
    "ack_comment": ("处理说明", "Comment"),
    "ack_hint": (
        "说明已采取或将采取的措施，例如：已通知运维人员到场。",
        "What was or will be done, e.g. maintenance crew called.",
    ),
    "acked": ("已确认", "Acknowledged"),
    "acked_line": ("{who} 于 {when} 确认", "Acknowledged by {who} at {when}"),
    "ack_again": ("更新确认", "Acknowledge again"),
    "silence": ("静音", "Silence"),
    "silence_for": ("静音时长", "Silence for"),
    "minutes_15": ("15 分钟", "15 min"),
    "hour_1": ("1 小时", "1 h"),
    "hours_4": ("4 小时", "4 h"),
    "hours_24": ("24 小时", "24 h"),
    "custom": ("自定义", "Custom"),
    "custom_duration": ("自定义时长", "Custom duration"),
    "custom_hint": ("例如 30m、2h、3d（最长 30 天）", "e.g. 30m, 2h, 3d (at most 30 days)"),
    "bad_duration": (
        "时长无效：请填写如 30m、2h 或 3d，最长 30 天。",
        "Not a valid duration: write e.g. 30m, 2h or 3d, at most 30 days.",
    ),
    "silence_scope": ("静音范围", "What to silence"),
    "scope_rule_device": ("本设备的此规则", "This rule on this device"),
    "scope_device": ("本设备的所有规则（检修）", "Every rule on this device (maintenance)"),
    "scope_rule": ("所有设备的此规则", "This rule on every device"),
    "silence_comment": ("静音原因", "Reason"),
    "silence_hint": (
        "静音期间告警照常记录，但不发送通知，且不在当前告警中显示。",
        "While silenced, alerts are still recorded but send no notification and are hidden "
        "from the active list.",
    ),
    "silences_here": ("作用于此告警的静音", "Silences covering this alert"),
    "silence_until": ("{who} 设置，至 {until}", "by {who} until {until}"),
    "end_silence": ("结束静音", "End silence"),
    "silenced_ok": ("已静音至 {until}。", "Silenced until {until}."),
    "acked_ok": ("已确认。", "Acknowledged."),
    "silence_ended": ("静音已结束。", "Silence ended."),
    "history": ("处理记录", "History"),
    "event": ("事件", "Event"),
    "by": ("操作人", "By"),
    "comment": ("说明", "Comment"),
    # devices
    "devices_title": ("设备状态", "Devices"),
    "online": ("在线", "Online"),
    "offline": ("离线", "Offline"),
    "never": ("从未上报", "Never reported"),
    "last_seen": ("最后上报", "Last seen"),
    "key_values": ("关键数值", "Latest values"),
    "dashboard": ("Grafana 看板", "Grafana dashboard"),
    "open_dashboard": ("打开看板", "Open dashboard"),
    "influx_unavailable": ("InfluxDB 暂不可用：", "InfluxDB unavailable: "),
    "n_devices": (
        "{n} 台设备：{on} 在线，{off} 离线，{never} 从未上报",
        "{n} devices: {on} online, {off} offline, {never} never reported",
    ),
    "alerts_of_device": ("该设备的告警", "Alerts of this device"),
    "connector": ("枪", "connector"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "silent_for": ("已 {d} 无数据", "silent for {d}"),
    "error": ("出错了", "Something went wrong"),
    # notifications, receivers, on call
    "nav_receivers": ("通知", "Notifications"),
    "on_call_now": ("轮值在岗：", "On call now:"),
    "oncall_title": ("轮值在岗人员", "On call now"),
    "nobody": ("无人值班", "nobody"),
    "notifications": ("通知记录", "Notifications"),
    "receiver": ("接收方", "Receiver"),
    "reason": ("类型", "Reason"),
    "result": ("结果", "Result"),
    "attempts": ("尝试次数", "Attempts"),
    "n_in_message": ("同一消息含 {n} 条告警", "{n} alerts in this message"),
    "no_notifications": ("尚未为这条告警发送通知。", "No notification has named this alert yet."),
    "why_notify": ("通知", "notification"),
    "why_reminder": ("提醒", "reminder"),
    "why_escalation": ("升级", "escalation"),
    "why_event": ("事件（MQTT/Webhook/InfluxDB）", "event (MQTT/webhook/InfluxDB)"),
    "why_test": ("测试", "test"),
    "why_grouping": ("等待合并", "grouping"),
    "sent_delivered": ("已送达", "Delivered"),
    "sent_failed": ("永久失败", "Permanent error"),
    "sent_retrying": ("重试中", "Retrying"),
    "sent_queued": ("排队中", "Queued"),
    "sent_grouping": ("等待合并发送", "Waiting to be grouped"),
    "receivers_title": ("通知渠道与值班", "Receivers and on-call"),
    "receivers": ("通知渠道", "Receivers"),
    "rota": ("值班表", "Rota"),
    "on_duty": ("值班人员", "On duty"),
    "until": ("至（交接班）", "Until (handover)"),
    "no_rota": ("路由文件中没有值班表（oncall:）。", "The routing file has no rota (oncall:)."),
    "no_receivers": (
        "未配置通知渠道：请设置 ENVGRID_ALERTS__ROUTING（见 docs/notifications.md）。",
        "No receivers: set ENVGRID_ALERTS__ROUTING (see docs/notifications.md).",
    ),
    "admin_hint": (
        "只有管理员可以发送测试消息（值班员文件中的 admin: true）。",
        "Only admins may send test messages (admin: true in the operators file).",
    ),
    "queued": ("待发送", "Queued"),
    "last_error": ("最近错误", "Last error"),
    "last_test": ("最近测试", "Last test"),
    "send_test": ("发送测试消息", "Send a test message"),
    "test_queued": (
        "已将测试消息排入 {name} 的发送队列，结果见下表（刷新页面）。",
        "A test message to {name} is queued: its result shows below (reload the page).",
    ),
    "admin_only": ("只有管理员可以执行此操作。", "Only an admin may do this."),
    "no_such_receiver": ("没有这个通知渠道。", "There is no such receiver."),
    # HJ 212 stations
    "nav_stations": ("监测站", "Stations"),
    "stations_title": ("HJ 212 监测站", "HJ 212 stations"),
    "no_gateway": (
        "本进程未运行 HJ 212 网关：请设置 ENVGRID_HJ212__PORT（见 docs/hj212.md）。",
        "The HJ 212 gateway does not run in this process: set ENVGRID_HJ212__PORT "
        "(see docs/hj212.md).",
    ),
    "no_stations": (
        "登记表中没有 HJ 212 监测站（mn）。",
        "No HJ 212 station (mn) in the registry.",
    ),
    "no_such_station": ("没有这个监测站。", "There is no such station."),
    "station_page": ("HJ 212 站点状态与命令", "HJ 212 state and commands"),
    "back_to_stations": ("返回监测站列表", "Back to the stations"),
    "connected": ("已连接", "Connected"),
    "not_connected": ("未连接", "Not connected"),
    "edition": ("标准版本", "Edition"),
    "last_packet": ("最后数据包", "Last packet"),
    "clock_offset": ("时钟偏差", "Clock offset"),
    "open_commands": ("未完成命令", "Open commands"),
    "last_command": ("最近命令", "Last command"),
    "gaps": ("缺失小时数", "Missing hours"),
    "station_state": ("站点状态", "Station state"),
    "station_commands": ("向站点发送命令", "Commands to the station"),
    "rerequest_hours": ("补传小时数据", "Re-request hours"),
    "begin_time": ("开始时间（站点本地时间）", "Begin (station's local time)"),
    "end_time": ("结束时间（含）", "End (inclusive)"),
    "rerequest_hint": (
        "发送 CN 2061：站点补传该时段的小时数据，数据照常入库。",
        "Sends CN 2061: the station re-sends the hourly data of that range, stored as usual.",
    ),
    "sync_clock": ("校准站点时钟", "Sync clock"),
    "sync_clock_hint": (
        "发送 CN 1012，以平台时间设置站点时钟。",
        "Sends CN 1012: sets the station's clock to the platform's time.",
    ),
    "commands": ("命令记录", "Commands"),
    "created_at": ("创建时间", "Created"),
    "answer": ("应答", "Answer"),
    "expires": ("过期于", "expires"),
    "n_packets": ("{n} 个数据包", "{n} data packets"),
    "no_commands": ("该站点还没有命令。", "No commands for this station yet."),
    "command_queued": (
        "命令已排队（QN {qn}），站点连接后发送。",
        "Command queued (QN {qn}): it goes out while the station is connected.",
    ),
    "clock_sync_waiting": (
        "已有一条校时命令（1012）在等待，未重复发送。",
        "A clock sync (1012) is already waiting: none added.",
    ),
    "command_refused": ("命令未排队：", "Command not queued: "),
    "cmd_queued": ("排队中", "queued"),
    "cmd_sent": ("已发送", "sent"),
    "cmd_accepted": ("已接受", "accepted"),
    "cmd_refused": ("被拒绝", "refused"),
    "cmd_succeeded": ("成功", "succeeded"),
    "cmd_failed": ("执行失败", "failed"),
    "cmd_no_data": ("无数据", "no data"),
    "cmd_timed_out": ("超时", "timed out"),
    "cmd_expired": ("已过期", "expired"),
    "cn_2061": ("补传小时数据", "re-send hourly data"),
    "cn_2051": ("补传分钟数据", "re-send minute data"),
    "cn_2031": ("补传日数据", "re-send daily data"),
    "cn_1011": ("读取站点时间", "read the station clock"),
    "cn_1012": ("设置站点时间", "set the station clock"),
    "cn_1061": ("读取实时数据间隔", "read the real-time data interval"),
    "cn_1062": ("设置实时数据间隔", "set the real-time data interval"),
    "cn_1063": ("读取分钟数据间隔", "read the minute data interval"),
    "cn_1064": ("设置分钟数据间隔", "set the minute data interval"),
    "cn_1000": ("设置超时时间及重发次数", "set the answer timeout and retry count"),
    "cn_1072": ("设置访问密码", "set the access password"),
    # Review (审核, docs/review.md)
    "nav_review": ("审核", "Review"),
    "review_title": ("数据审核", "Data review"),
    "review_intro": (
        "自动质控标记为可疑（3）或失败（4）的小时和被剔除的无效值排在最前；选择一个小时进行审核。",
        "Hours with values QC flagged suspect (3) or fail (4), and values set apart as invalid, "
        "come first; pick an hour to review it.",
    ),
    "review_range": ("查看时段", "Period shown"),
    "view_from": ("从", "From"),
    "view_to": ("到", "To"),
    "show": ("显示", "Show"),
    "suspect_data": ("待审核数据", "Data to review"),
    "no_suspect": (
        "此时段没有可疑、失败或无效的数据。",
        "No suspect, failed or invalid data in this period.",
    ),
    "hour": ("小时", "Hour"),
    "field": ("监测项", "Field"),
    "n_suspect": ("可疑", "Suspect"),
    "n_fail": ("失败", "Fail"),
    "n_invalid": ("无效值", "Invalid"),
    "qc_tests": ("质控检查", "QC tests"),
    "select_hour": ("选择此小时", "Select this hour"),
    "review_devices": ("可审核的设备", "Devices to review"),
    "review_readonly": (
        "只有审核员或管理员可以标记数据；你可以查看。",
        "Only an auditor or an admin may mark data; you may look.",
    ),
    "auditor_only": (
        "只有审核员或管理员可以审核数据。",
        "Only an auditor or an admin may review data.",
    ),
    "review_unavailable": ("本进程未启用审核。", "Review is not available in this process."),
    "no_such_device": (
        "没有这个设备，或它的数据不参与统计。",
        "There is no such device, or its data are not rolled up.",
    ),
    "back_to_review": ("返回审核列表", "Back to the review list"),
    "chart_of": ("{field} 读数", "{field} readings"),
    "chart_legend": (
        "◆ 可疑（3）　✕ 失败（4）　虚线框阴影：已标记无效的时段",
        "◆ suspect (3)   ✕ fail (4)   shaded, dashed outline: ranges marked invalid",
    ),
    "mark_data": ("标记数据", "Mark data"),
    "mark_from": ("开始时间", "From"),
    "mark_to": ("结束时间（不含）", "To (exclusive)"),
    "mark_fields": ("监测项", "Fields"),
    "all_fields": ("全部监测项", "All fields"),
    "action": ("操作", "Action"),
    "mark_reason": ("原因", "Reason"),
    "comment_hint": (
        "原因为“其他”时必须填写说明。",
        'A comment is required for the reason "other".',
    ),
    "submit_mark": ("提交审核", "Record the mark"),
    "mark_done": (
        "标记 #{id} 已记录，相关时段已重新统计。",
        "Mark #{id} is recorded and the windows it touches are recomputed.",
    ),
    "mark_refused": ("未记录：", "Not recorded: "),
    "bad_time": ("请填写有效的开始和结束时间。", "Give a valid start and end time."),
    "no_fields_chosen": (
        "请至少选择一个监测项，或“全部监测项”。",
        'Choose at least one field, or "all fields".',
    ),
    "mark_history": ("审核记录", "Review history"),
    "no_marks": ("此时段没有审核记录。", "No review marks in this period."),
    "recorded_at": ("记录时间", "Recorded"),
    "who": ("审核人", "By"),
    "period": ("时段", "Period"),
}

ACTION_LABELS: dict[str, tuple[str, str]] = {
    "invalidate": ("标记无效", "Invalidate"),
    "restore": ("恢复有效", "Restore"),
}

# The fixed reasons of rollups.review.REASONS.
REASON_LABELS: dict[str, tuple[str, str]] = {
    "calibration": ("校准", "Calibration"),
    "maintenance": ("维护", "Maintenance"),
    "power_cut": ("停电", "Power cut"),
    "communication_loss": ("通信中断", "Communication loss"),
    "instrument_fault": ("仪器故障", "Instrument fault"),
    "abnormal_value": ("数据异常", "Abnormal value"),
    "suspected_tampering": ("疑似人为干扰", "Suspected tampering"),
    "other": ("其他", "Other"),
}

QC_TEST_LABELS: dict[str, tuple[str, str]] = {
    "gross_range": ("量程", "gross range"),
    "spike": ("尖峰", "spike"),
    "rate_of_change": ("变化率", "rate of change"),
    "flat_line": ("恒值", "flat line"),
}

SEVERITY_LABELS: dict[str, tuple[str, str]] = {
    "critical": ("紧急", "Critical"),
    "major": ("严重", "Major"),
    "minor": ("一般", "Minor"),
    "warning": ("警告", "Warning"),
    "info": ("提示", "Info"),
}

STATE_LABELS: dict[str, tuple[str, str]] = {
    "pending": ("待触发", "Pending"),
    "firing": ("告警中", "Firing"),
    "resolved": ("已恢复", "Resolved"),
}

EVENT_LABELS: dict[str, tuple[str, str]] = {
    "pending": ("开始越限", "breach began"),
    "firing": ("触发告警", "fired"),
    "resolved": ("恢复", "resolved"),
    "acked": ("确认", "acknowledged"),
    "silenced": ("被静音", "silenced"),
    "unsilenced": ("静音结束", "silence ended"),
}

# Registry facts any kind may have; a kind names its own facts (DeviceKind.fact_labels), and
# its name and value words are its own too (DeviceKind.label, value_texts).
FACT_LABELS: dict[str, tuple[str, str]] = {
    "mn": ("HJ 212 MN", "HJ 212 MN"),
}


def translator(lang: Lang) -> Callable[..., str]:
    """``t(key, **fmt)``: the label in ``lang``; an unknown key is returned as is."""
    i = LANGS.index(lang)

    def t(key: str, **fmt: object) -> str:
        pair = LABELS.get(key)
        text = pair[i] if pair else key
        return text.format(**fmt) if fmt else text

    return t


def pick(table: dict[str, tuple[str, str]], key: str, lang: Lang) -> str:
    """A label from one of the tables above; the key itself when it has none."""
    pair = table.get(key)
    return pair[LANGS.index(lang)] if pair else key
